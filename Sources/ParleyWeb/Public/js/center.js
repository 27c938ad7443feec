// The meeting center: full join links with copy buttons and local times (plain-page.js),
// the browser's time zone for the server, and the schedule form checked here before it is
// sent, in words about what the user sees: the browser's date and time pickers show their
// own formats, whatever the server reads.

import './plain-page.js';

const form = document.getElementById('create-meeting');
const date = document.getElementById('meeting-date');
const time = document.getElementById('meeting-time');
const offset = document.getElementById('tz-offset');
const problem = document.getElementById('schedule-problem');

if (offset) offset.value = String(new Date().getTimezoneOffset());

/**
 * What is wrong with the day and time, for a person, or null. `now` is passed in so the
 * rule is plain to read (and to test from the console).
 * @returns {{field: HTMLInputElement, text: string} | null}
 */
export function scheduleProblem(dateInput, timeInput, now) {
  if (dateInput.validity.badInput) {
    return { field: dateInput, text: 'The date is incomplete or is not a real day. Pick the day from the calendar, or fill in the day, the month and the year.' };
  }
  if (!dateInput.value) {
    return { field: dateInput, text: 'Choose the day of the meeting to schedule it. To start it at once, press “Start now”.' };
  }
  if (timeInput.validity.badInput) {
    return { field: timeInput, text: 'The time is incomplete. Fill in the hour and the minutes.' };
  }
  if (!timeInput.value) {
    return { field: timeInput, text: 'Choose the time the meeting starts.' };
  }
  const when = localMoment(dateInput.value, timeInput.value);
  if (!when) return { field: dateInput, text: 'This day and time could not be read. Pick them again from the calendar and the clock.' };
  if (when.getTime() < now.getTime() - 60000) {
    return { field: dateInput, text: 'That day and time have already passed. Choose a time in the future.' };
  }
  return null;
}

/** The input elements' values (always YYYY-MM-DD and HH:MM, whatever they display) as a local moment. */
function localMoment(day, clock) {
  const [year, month, dayOfMonth] = day.split('-').map(Number);
  const [hour, minute] = clock.split(':').map(Number);
  const when = new Date(year, month - 1, dayOfMonth, hour, minute);
  return Number.isNaN(when.getTime()) ? null : when;
}

function showProblem(found) {
  for (const input of [date, time]) {
    if (input === found?.field) input.setAttribute('aria-invalid', 'true');
    else input.removeAttribute('aria-invalid');
  }
  problem.textContent = found ? found.text : '';
  problem.hidden = !found;
}

if (form && date && time && problem) {
  // The browser's own check would stop a half-typed date with its own words, even for
  // "Start now", which needs no date: this page checks the day and time itself.
  form.noValidate = true;
  form.addEventListener('submit', (event) => {
    for (const field of form.elements) {
      if (field === date || field === time || !field.willValidate || field.checkValidity()) continue;
      event.preventDefault();
      field.reportValidity(); // the title, the size limit: the browser says it well enough
      return;
    }
    if (event.submitter?.value !== 'schedule') {
      showProblem(null);
      return;
    }
    const found = scheduleProblem(date, time, new Date());
    if (found) {
      event.preventDefault();
      showProblem(found);
      found.field.focus();
      return;
    }
    showProblem(null);
    // The offset of the chosen day, not today's: they differ across a daylight-saving change.
    const when = localMoment(date.value, time.value);
    if (when && offset) offset.value = String(when.getTimezoneOffset());
  });
  // A fixed field takes its complaint away.
  for (const input of [date, time]) input.addEventListener('change', () => {
    if (!problem.hidden && !scheduleProblem(date, time, new Date())) showProblem(null);
  });
}
