// What the server-rendered pages (meeting center, sign-in) need from the browser: times on
// the reader's own clock, join links as the full address the browser used, and copy buttons.
// Only text is ever set (textContent, value), never markup.

/** "in 15 minutes", "in 1 hour and 5 minutes", "in less than a minute". */
export function relativeTime(remainingMs) {
  const minutes = Math.ceil(Math.max(0, remainingMs) / 60000);
  if (minutes < 1) return 'in less than a minute';
  const plural = (n, noun) => `${n} ${noun}${n === 1 ? '' : 's'}`;
  if (minutes < 60) return `in ${plural(minutes, 'minute')}`;
  const hours = Math.floor(minutes / 60);
  const rest = minutes % 60;
  return `in ${plural(hours, 'hour')}${rest ? ` and ${plural(rest, 'minute')}` : ''}`;
}

/**
 * Every <time datetime> on the reader's clock. One with data-remaining-ms (the server's
 * count, so a wrong clock here does not matter) reads "in 15 minutes (at 14:32)".
 */
export function localizeTimes(root = document) {
  for (const time of root.querySelectorAll('time[datetime]')) {
    const when = new Date(time.getAttribute('datetime'));
    if (Number.isNaN(when.getTime())) continue;
    const remaining = time.dataset.remainingMs;
    if (remaining !== undefined) {
      const clock = when.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
      time.textContent = `${relativeTime(Number(remaining))} (at ${clock})`;
    } else {
      time.textContent = when.toLocaleString([], { dateStyle: 'medium', timeStyle: 'short' });
    }
  }
}

/** The full address of a path on this server, as the browser sees it (scheme, host, port). */
export function fullUrl(path) {
  return new URL(path, location.origin).href;
}

/** Join links (data-path) become full addresses; their copy buttons appear. */
export function showJoinLinks(root = document) {
  for (const node of root.querySelectorAll('[data-path]')) {
    const url = fullUrl(node.dataset.path);
    if (node instanceof HTMLInputElement) {
      node.value = url;
      node.size = Math.min(60, url.length);
    } else {
      node.textContent = url;
      node.href = url;
    }
  }
  for (const button of root.querySelectorAll('button.copy-link[data-copy]')) {
    button.hidden = false;
    button.addEventListener('click', () => copyLink(button));
  }
}

async function copyLink(button) {
  const target = document.getElementById(button.dataset.copy);
  const status = button.nextElementSibling?.classList.contains('copy-status') ? button.nextElementSibling : null;
  if (!target) return;
  const text = target instanceof HTMLInputElement ? target.value : target.textContent;
  let copied = false;
  try {
    await navigator.clipboard.writeText(text);
    copied = true;
  } catch {
    // No clipboard API here (plain http on another host is not a secure context): select
    // the text so Ctrl+C, or the old copy command, still works.
    copied = selectAndCopy(target);
  }
  button.dataset.copied = copied ? 'true' : 'false';
  if (status) status.textContent = copied ? 'Copied.' : 'Select the link and copy it (Ctrl+C).';
  clearTimeout(button.copiedTimer);
  button.copiedTimer = setTimeout(() => {
    if (status) status.textContent = '';
    delete button.dataset.copied;
  }, 4000);
}

function selectAndCopy(target) {
  if (target instanceof HTMLInputElement) {
    target.focus();
    target.select();
  } else {
    const range = document.createRange();
    range.selectNodeContents(target);
    const selection = getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
  }
  try {
    return document.execCommand('copy');
  } catch {
    return false;
  }
}

localizeTimes();
showJoinLinks();
