// Wording helpers for text shown to people.

/**
 * A server message as a sentence. Servers speak in lower-case phrases ("only the presenter
 * turns pages"); the page shows "Only the presenter turns pages."
 */
export function sentence(text) {
  const value = String(text ?? '').trim();
  if (!value) return '';
  const capitalized = value[0].toUpperCase() + value.slice(1);
  return /[.!?…]$/.test(capitalized) ? capitalized : `${capitalized}.`;
}

/** "1 page", "3 pages". */
export function count(n, noun) {
  return `${n} ${noun}${n === 1 ? '' : 's'}`;
}
