// Polls, in the attendee pane: the presenter or host creates one; everybody votes once; its
// creator or the host closes it. Results are live counts from the meeting state.

import { el, setText, setData, show, enable, syncKeyed } from '../dom.js';
import { LIMITS, isValidText, newId, ops, textLength } from '../ops.js';
import { pollResults, participantOf } from '../state.js';
import { count } from '../text.js';

export class PollsView {
  constructor(ctx) {
    this.ctx = ctx;
    this.question = el('input', { id: 'poll-question', type: 'text', maxLength: LIMITS.textLength, placeholder: 'Question', autocomplete: 'off' });
    this.options = el('textarea', { id: 'poll-options', rows: 3, placeholder: 'One option per line' });
    this.create = el('button', { id: 'poll-create', type: 'submit', text: 'Create poll' });
    this.form = el('form', { class: 'poll-form', on: { submit: (event) => this.submit(event) } },
      el('label', { htmlFor: 'poll-question', text: 'Question' }), this.question,
      el('label', { htmlFor: 'poll-options', text: 'Options' }), this.options,
      this.create);
    this.list = el('ol', { id: 'poll-list', class: 'poll-list' });
    this.empty = el('p', { class: 'empty', text: 'No polls yet.' });
    this.creating = false;
    this.element = el('section', { class: 'polls', attrs: { 'aria-labelledby': 'polls-heading' } },
      el('h2', { id: 'polls-heading', text: 'Polls' }), this.form, this.empty, this.list);
  }

  render(model) {
    const { meeting, me, isHost, isPresenter, canAct } = model;
    const enabled = Boolean(meeting?.settings.features.polls);
    show(this.element, enabled);
    if (!meeting) return;
    show(this.form, enabled && (isPresenter || isHost));
    enable(this.create, canAct && !this.creating);
    const polls = [...meeting.polls].reverse(); // newest first
    show(this.empty, polls.length === 0);
    syncKeyed(this.list, polls, (poll) => poll.id, (poll) => this.createItem(poll),
      (node, poll) => this.updateItem(node, poll, meeting, me, isHost, canAct));
  }

  async submit(event) {
    event.preventDefault();
    const question = this.question.value.trim();
    const options = this.options.value.split('\n').map((line) => line.trim()).filter((line) => line.length > 0);
    const problem = !isValidText(question) ? 'A poll needs a question (up to 4000 characters).'
      : options.length < LIMITS.pollOptions.min || options.length > LIMITS.pollOptions.max
        ? `A poll needs ${LIMITS.pollOptions.min} to ${LIMITS.pollOptions.max} options, one per line.`
        : options.some((option) => textLength(option) > LIMITS.pollOptionLength)
          ? `A poll option has at most ${LIMITS.pollOptionLength} characters.` : null;
    if (problem) {
      this.ctx.notify(problem);
      return;
    }
    this.creating = true;
    enable(this.create, false);
    const outcome = await this.ctx.send(ops.createPoll(newId('poll'), question, options));
    this.creating = false;
    if (outcome.ok) {
      this.question.value = '';
      this.options.value = '';
    }
    this.ctx.refresh();
  }

  createItem(poll) {
    const id = poll.id;
    const options = el('ol', { class: 'poll-options' });
    poll.options.forEach((text, index) => {
      options.append(el('li', { class: 'poll-option' },
        el('button', { type: 'button', class: 'poll-vote', data: { option: index }, text, on: { click: () => this.ctx.send(ops.vote(id, index)) } }),
        el('span', { class: 'poll-bar', attrs: { 'aria-hidden': 'true' } }, el('span', { class: 'poll-bar-fill' })),
        el('span', { class: 'poll-result', data: { option: index }, text: '0' })));
    });
    const node = el('li', { class: 'poll', data: { poll: id } },
      el('p', { class: 'poll-question', text: poll.question }),
      el('p', { class: 'poll-meta' }),
      options,
      el('button', { type: 'button', class: 'poll-close', text: 'Close poll', on: { click: () => this.ctx.send(ops.closePoll(id)) } }));
    return node;
  }

  updateItem(node, poll, meeting, me, isHost, canAct) {
    setData(node, 'closed', poll.closed ? 'true' : 'false');
    const myVote = poll.votes.find((vote) => vote.voter === me)?.option;
    const results = pollResults(poll);
    const total = poll.votes.length;
    const creator = participantOf(meeting, poll.creator)?.name ?? poll.creator;
    setText(node.querySelector('.poll-meta'),
      `by ${creator} · ${count(total, 'vote')}${poll.closed ? ' · closed' : ''}`);
    node.querySelectorAll('.poll-option').forEach((option, index) => {
      const vote = option.querySelector('.poll-vote');
      enable(vote, canAct && !poll.closed && myVote === undefined);
      vote.setAttribute('aria-pressed', myVote === index ? 'true' : 'false');
      setText(option.querySelector('.poll-result'), results[index] ?? 0);
      option.querySelector('.poll-bar-fill').style.width = `${total ? Math.round((100 * (results[index] ?? 0)) / total) : 0}%`;
    });
    const close = node.querySelector('.poll-close');
    show(close, !poll.closed && (poll.creator === me || isHost));
    enable(close, canAct);
  }
}
