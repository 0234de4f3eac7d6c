"""The page's own CSS and script, kept in Python so the app ships as a plain package."""

CSS = """
.gradio-container { max-width: 1400px !important; margin: 0 auto; }
#title h1 { font-size: 1.35rem; margin: 0.2rem 0 0; }
#title p { margin: 0.1rem 0 0.4rem; color: var(--body-text-color-subdued); }
.sources { position: relative; max-height: 660px; overflow-y: auto; padding-right: 4px; }
.sources h3 { margin: 0 0 0.5rem; font-size: 1rem; }
.sources h3 .count { color: var(--body-text-color-subdued); font-weight: normal; }
.sources .source { border: 1px solid var(--border-color-primary); border-radius: 8px;
  padding: 0.4rem 0.6rem; margin-bottom: 0.5rem; background: var(--background-fill-primary); }
.sources .source[open] { border-color: var(--color-accent); }
.sources .source.flash { box-shadow: 0 0 0 3px var(--color-accent-soft); }
.sources summary { cursor: pointer; line-height: 1.35; }
.sources .n { font-weight: 600; color: var(--color-accent); }
.sources .title { font-weight: 600; }
.sources .loc { color: var(--body-text-color-subdued); white-space: nowrap; }
.sources .meta { font-size: 0.85rem; color: var(--body-text-color-subdued); margin: 0.3rem 0; }
.sources .passage { margin: 0.3rem 0 0; padding: 0.4rem 0.6rem; border-left: 3px solid var(--border-color-primary);
  white-space: pre-wrap; font-size: 0.9rem; line-height: 1.45; }
.sources mark { background: #fff1a8; color: inherit; padding: 0 1px; border-radius: 2px; }
.sources .declined { font-weight: 600; }
.sources .removed { border-top: 1px dashed var(--border-color-primary); margin-top: 0.6rem; font-size: 0.9rem; }
.sources .removed li { text-decoration: line-through; color: var(--body-text-color-subdued); }
.sources .timing { font-size: 0.8rem; color: var(--body-text-color-subdued); margin-top: 0.4rem; }
a.cite { text-decoration: none; font-weight: 600; font-size: 0.85em; vertical-align: super; padding: 0 1px; }
.sources button.open-source { margin-top: 0.35rem; font-size: 0.85rem; padding: 0.15rem 0.6rem;
  border: 1px solid var(--color-accent); border-radius: 6px; background: transparent; color: var(--color-accent); cursor: pointer; }
.sources button.open-source:focus-visible, .viewer button:focus-visible { outline: 3px solid var(--color-accent); outline-offset: 1px; }
.viewer { border: 1px solid var(--border-color-primary); border-radius: 8px; padding: 0.4rem; margin-bottom: 0.5rem;
  background: var(--background-fill-primary); }
.viewer:focus { outline: 2px solid var(--color-accent-soft); }
.viewer header { display: flex; flex-wrap: wrap; align-items: center; justify-content: space-between; gap: 0.3rem; }
.viewer header .title { font-weight: 600; font-size: 0.9rem; }
.viewer .controls { display: flex; align-items: center; gap: 0.25rem; font-size: 0.85rem; }
.viewer .controls button { border: 1px solid var(--border-color-primary); border-radius: 5px; padding: 0.1rem 0.45rem;
  background: var(--background-fill-secondary); cursor: pointer; }
.viewer .controls button[disabled] { opacity: 0.4; cursor: default; }
.viewer .quote, .viewer .note { font-size: 0.82rem; margin: 0.25rem 0; color: var(--body-text-color-subdued); }
.viewer .canvas { max-height: 640px; overflow: auto; border-top: 1px solid var(--border-color-primary); }
.viewer .page { position: relative; }
.viewer .page img { display: block; width: 100%; height: auto; }
.viewer .hl { position: absolute; background: rgba(255, 214, 0, 0.38); outline: 1px solid rgba(214, 160, 0, 0.9);
  mix-blend-mode: multiply; pointer-events: none; }
.viewer .section-text { white-space: pre-wrap; font-size: 0.9rem; line-height: 1.5; padding: 0.4rem; }
.viewer .section-text mark { background: #fff1a8; color: inherit; }
.viewer.empty { display: none; }
table.library { width: 100%; border-collapse: collapse; font-size: 0.92rem; }
table.library th, table.library td { border-bottom: 1px solid var(--border-color-primary); padding: 0.35rem 0.5rem;
  text-align: left; vertical-align: top; }
table.library .ref { font-size: 0.8rem; color: var(--body-text-color-subdued); margin-top: 0.15rem; }
table.library td.num { text-align: right; }
table.library td.file { font-family: var(--font-mono); font-size: 0.8rem; word-break: break-all; }
.outcomes ul { padding-left: 1.1rem; margin: 0.3rem 0; }
.outcomes li.ok .status { color: #1a7f37; font-weight: 600; }
.outcomes li.error .status, .outcomes p.error { color: #c62828; font-weight: 600; }
.outcomes .file { font-family: var(--font-mono); font-size: 0.85rem; }
.outcomes .detail { font-size: 0.9rem; }
"""

# The sources panel: an "Open page" button sends its citation to the server (the viewer opens).
SOURCES_JS = """
element.addEventListener('click', (event) => {
  const button = event.target.closest && event.target.closest('button.open-source');
  if (!button) return;
  trigger('click', {chunk_id: button.dataset.chunk, start: Number(button.dataset.start), end: Number(button.dataset.end)});
});
"""

# The viewer: its buttons, and the keyboard (arrows turn pages, + and - zoom, Escape closes).
VIEWER_JS = """
const keys = {ArrowLeft: 'prev', ArrowRight: 'next', '+': 'zoom-in', '=': 'zoom-in', '-': 'zoom-out', Escape: 'close'};
let last = null;  // the control used last keeps the focus when the viewer is redrawn
const send = (action) => {
  const button = element.querySelector(`button[data-action="${action}"]`);
  if (button && !button.disabled) { last = action; trigger('click', {action}); }
};
element.addEventListener('click', (event) => {
  const button = event.target.closest && event.target.closest('button[data-action]');
  if (button) send(button.dataset.action);
});
element.addEventListener('keydown', (event) => {
  if (!event.target.closest('.viewer') || event.altKey || event.ctrlKey || event.metaKey) return;
  const action = keys[event.key];
  if (action) { event.preventDefault(); send(action); }
});
new MutationObserver(() => {
  const viewer = element.querySelector('.viewer:not(.empty)');
  if (!viewer || viewer.dataset.focused) return;
  viewer.dataset.focused = '1';
  const button = last && viewer.querySelector(`button[data-action="${last}"]:not([disabled])`);
  (button || viewer).focus();
  last = null;
}).observe(element, {childList: true, subtree: true});
"""

# A click on an [n] marker opens that source card beside the chat. Clicking a message also
# switches the panel to that answer's sources, so the card may appear a moment later.
JS = """
() => {
  document.addEventListener('click', (event) => {
    const link = event.target.closest && event.target.closest('a.cite');
    if (!link) return;
    event.preventDefault();  // the message's own select event still runs and picks its answer
    const id = (link.getAttribute('href') || '').slice(1);
    let tries = 0;
    const open = () => {
      const card = document.getElementById(id);
      if (!card) { if (++tries < 20) setTimeout(open, 100); return; }
      document.querySelectorAll('#sources details.source').forEach((d) => { if (d !== card) d.open = false; });
      card.open = true;
      const box = card.closest('.sources');  // scroll the panel, not the page
      if (box) box.scrollTo({top: card.offsetTop - 8, behavior: 'smooth'});
      card.classList.add('flash');
      setTimeout(() => card.classList.remove('flash'), 1200);
    };
    open();
  }, true);
}
"""
