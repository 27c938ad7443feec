// Small DOM helpers. Every piece of text that reaches the page goes through textContent or
// setAttribute, never innerHTML: names, chat, titles and poll texts come from other people.

// Keys of `el` props that are set as DOM properties; everything else is an attribute.
const PROPERTIES = new Set([
  'id', 'type', 'value', 'disabled', 'hidden', 'tabIndex', 'title', 'placeholder', 'accept',
  'htmlFor', 'checked', 'name', 'rows', 'autocomplete', 'maxLength', 'multiple', 'draggable',
]);

/**
 * Creates an element. `props` may hold:
 * - `class`: a class string; `text`: textContent;
 * - `data`: {key: value} for data-* attributes; `attrs`: other attributes;
 * - `on`: {event: handler};
 * - any key in PROPERTIES, set as a property.
 * Children are nodes or strings (strings become text nodes); null/false are skipped.
 */
export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === undefined || value === null) continue;
    if (key === 'class') node.className = value;
    else if (key === 'text') node.textContent = value;
    else if (key === 'data') for (const [k, v] of Object.entries(value)) node.dataset[k] = String(v);
    else if (key === 'attrs') for (const [k, v] of Object.entries(value)) node.setAttribute(k, String(v));
    else if (key === 'on') for (const [k, v] of Object.entries(value)) node.addEventListener(k, v);
    else if (PROPERTIES.has(key)) node[key] = value;
    else node.setAttribute(key, String(value));
  }
  append(node, children);
  return node;
}

function append(node, children) {
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(typeof child === 'string' ? document.createTextNode(child) : child);
  }
}

/** Sets textContent only when it changes, so selections and screen readers are not disturbed. */
export function setText(node, text) {
  const value = String(text);
  if (node.textContent !== value) node.textContent = value;
}

/** Sets a data-* attribute only when it changes (tests and CSS read these). */
export function setData(node, key, value) {
  const text = String(value);
  if (node.dataset[key] !== text) node.dataset[key] = text;
}

export function show(node, visible) {
  if (node.hidden === visible) node.hidden = !visible;
}

export function enable(node, enabled) {
  if (node.disabled === enabled) node.disabled = !enabled;
}

/**
 * Makes `container`'s children match `items`, in order, reusing the element made for each
 * key. Elements are updated in place rather than rebuilt, so focus, scroll position and
 * element references held by a user (or a test) survive a re-render.
 * The container must hold only children placed here.
 */
export function syncKeyed(container, items, keyOf, create, update) {
  const previous = container.__parleyKeyed ?? new Map();
  const next = new Map();
  let cursor = container.firstChild;
  for (const item of items) {
    const key = keyOf(item);
    if (next.has(key)) continue; // a duplicate key would place one node twice
    let node = previous.get(key);
    if (!node) node = create(item);
    update(node, item);
    next.set(key, node);
    if (node === cursor) cursor = cursor.nextSibling;
    else container.insertBefore(node, cursor);
  }
  for (const [key, node] of previous) if (!next.has(key)) node.remove();
  container.__parleyKeyed = next;
}

/** A random identifier of letters and digits (the protocol's identifier alphabet). */
export function randomId(length = 12) {
  const alphabet = 'abcdefghijklmnopqrstuvwxyz0123456789';
  const bytes = crypto.getRandomValues(new Uint8Array(length));
  let id = '';
  for (const byte of bytes) id += alphabet[byte % alphabet.length];
  return id;
}
