// The meeting center: tells the server the browser's time zone, so a scheduled time means
// what the user typed, and shows scheduled times on the user's clock.
const offset = document.getElementById('tz-offset');
if (offset) offset.value = String(new Date().getTimezoneOffset());

for (const time of document.querySelectorAll('time[datetime]')) {
  const when = new Date(time.getAttribute('datetime'));
  if (!Number.isNaN(when.getTime())) time.textContent = when.toLocaleString();
}
