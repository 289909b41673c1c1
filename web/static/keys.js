// The listener's keys: Space play/pause, N skip, M mute, and the OS media keys.

/** Focus is where the listener types: a key there is text, not a shortcut. */
function typingIn(target) {
  const tag = target?.tagName;
  return (
    target?.isContentEditable ||
    tag === 'TEXTAREA' ||
    tag === 'SELECT' ||
    (tag === 'INPUT' && target.type !== 'range')
  );
}

/**
 * Keyboard shortcuts on the document.
 * @param {HTMLButtonElement} playButton  Space on it toggles once (no native click as well)
 * @param {{onPlayToggle:Function, onSkip:Function, onMuteToggle:Function}} intents
 */
export function bindKeys(playButton, { onPlayToggle, onSkip, onMuteToggle }) {
  const actions = new Map([
    [' ', onPlayToggle],
    ['n', onSkip],
    ['m', onMuteToggle],
  ]);
  document.addEventListener('keydown', (event) => {
    if (event.defaultPrevented || event.ctrlKey || event.metaKey || event.altKey) return;
    const target = event.target;
    if (typingIn(target)) return;
    const key = event.code === 'Space' ? ' ' : (event.key ?? '').toLowerCase();
    const action = actions.get(key);
    if (!action) return;
    // Other buttons keep their native Space activation (keyboard users expect it).
    const tag = target?.tagName;
    if (key === ' ' && ((tag === 'BUTTON' && target !== playButton) || tag === 'A')) return;
    event.preventDefault();
    if (!event.repeat) action();
  });
  // The play button handles Space itself on keydown above; stop its native keyup click.
  playButton.addEventListener('keyup', (event) => {
    if (event.key === ' ') event.preventDefault();
  });
}

/** The OS media keys and lock-screen controls, where the browser offers them. */
export function bindMediaKeys({ onPlay, onPause, onSkip }) {
  if (!('mediaSession' in navigator)) return;
  navigator.mediaSession.setActionHandler('play', () => onPlay());
  navigator.mediaSession.setActionHandler('pause', () => onPause());
  navigator.mediaSession.setActionHandler('nexttrack', () => onSkip());
}
