// radiod player: audio-first sessions (DESIGN.md §5, the seed's Phases 1–2).
//
//   page load ─► session ID (localStorage 'audioSessionId' | POST /create-session)
//             ─► SSE /events?session=ID          (metadata: secondary)
//   play      ─► <audio> /stream?session=ID&listener=NONCE   (audio: the source of truth)
//
// This file only wires the page's parts together; each has one job:
//   session.js     the one session ID both channels use (cache, create, probe)
//   share.js       the session elsewhere: share link, QR code, playlists; `/?session=ID`
//   player.js      the <audio> element, its source, play / pause
//   health.js      is the audio really playing? (audio-first health)
//   events.js      the SSE channel
//   recovery.js    SSE dies → same session; audio dies → full restart on a new one, backing off
//   nowplaying.js  what is audible now (timeline.js), on screen and in the media session
//   volume.js, keys.js   the listener's volume and keys
//   view.js        the DOM;  debug.js  window.radiod, read-only
//   beacons.js     health transitions reported to the server (POST /sessions/ID/health)

import { HealthReporter } from './beacons.js';
import { exposeDebugWindow, History } from './debug.js';
import { EventChannel, EVENTS_STATUS } from './events.js';
import { AUDIO_STATUS, AudioHealth } from './health.js';
import { bindKeys, bindMediaKeys } from './keys.js';
import { NowPlaying } from './nowplaying.js';
import { Player } from './player.js';
import { Recovery } from './recovery.js';
import { CurrentSession, requestSkip } from './session.js';
import { acceptInvitation, SharePanel } from './share.js';
import { View } from './view.js';
import { Volume } from './volume.js';

const config = JSON.parse(document.getElementById('radiod-config').textContent);
const { endpoints } = config;
const SKIP_NOTICE = { tone: 'warn', clearAfterMs: 4000 };
const EXPIRED_INVITATION = 'That shared station has ended — tuning in to your own';

const audio = document.getElementById('audio');
const view = new View();

const share = new SharePanel(endpoints.sessions);
const session = new CurrentSession(endpoints.createSession, {
  onChange(sessionId, fresh) {
    view.setSession(sessionId);
    share.show(sessionId);
    if (fresh) nowPlaying.newSession();
  },
  invitation: () =>
    acceptInvitation(endpoints.stream, {
      onExpired: () => view.notice('share', EXPIRED_INVITATION, { clearAfterMs: 6000 }),
    }),
});
const reporter = new HealthReporter(endpoints.sessions, () => player);
const history = new History(() => session.id, (entry) => reporter.observe(entry));

function showStatus(channel, status) {
  history.record(channel, status);
  view.setChannelStatus(channel, status);
}

const health = new AudioHealth(audio, config.health, {
  onStatus(status) {
    showStatus('audio', status);
    if (status === AUDIO_STATUS.degraded) {
      const text = 'The audio is struggling to keep up — still trying…';
      view.notice('degraded', text, { tone: 'warn' });
    } else if (status === AUDIO_STATUS.connected) {
      view.clearNotice('degraded');
    }
    player.showState();
  },
  onDead(reason) {
    reporter.dead(session.id, reason, health.lastAdvanceAt);
    recovery.audioDied(reason);
  },
  onAdvance: (_currentTime, now) => player.advanced(now),
});

const events = new EventChannel(endpoints.events, {
  onStatus: (status) => showStatus('events', status),
  onConnected: () => recovery.eventsConnected(),
  onEvent: (data) => nowPlaying.onEvent(data),
  onSessionNotFound: (sessionId) => recovery.sessionNotFound(sessionId),
  onError: () => recovery.eventsFailed(),
});

const nowPlaying = new NowPlaying(audio, view, {
  burstSeconds: config.stream.burstSeconds,
  context: () => ({
    sessionId: session.id,
    listenerId: player.listenerId,
    playing: player.wantPlaying,
  }),
});

const player = new Player(audio, health, view, nowPlaying, {
  streamEndpoint: endpoints.stream,
  gate: {
    startable: () => recovery.startableSession(),
    confirmed: () => session.confirmed,
    lost: (sessionId) => recovery.sessionNotFound(sessionId),
  },
});

const recovery = new Recovery({
  session,
  player,
  health,
  events,
  view,
  record: (channel, status, extra) => history.record(channel, status, extra),
  streamEndpoint: endpoints.stream,
});

const volume = new Volume(audio, view);

async function skip() {
  const sessionId = recovery.startableSession();
  if (!sessionId) return;
  const status = await requestSkip(endpoints.sessions, sessionId);
  if (status === 404 && sessionId === session.id) {
    recovery.sessionNotFound(sessionId);
  } else if (status === 0) {
    view.notice('skip', 'Skip failed: the server is unreachable', SKIP_NOTICE);
  } else if (status < 200 || status >= 300) {
    view.notice('skip', `Skip failed (${status})`, SKIP_NOTICE);
  }
}

// -- start --------------------------------------------------------------------------------

const intents = {
  onPlayToggle: () => player.toggle(),
  onSkip: skip,
  onMuteToggle: () => volume.toggleMute(),
};
view.bind({
  ...intents,
  onVolume: (level) => volume.set(level),
  onResume: () => player.resume(),
});
bindKeys(view.playButton, intents);
bindMediaKeys({ onPlay: () => player.play(), onPause: () => player.pause(), onSkip: skip });
volume.restore();
view.setChannelStatus('audio', health.status);
view.setChannelStatus('events', EVENTS_STATUS.connecting);
audio.addEventListener('timeupdate', () => nowPlaying.render());
exposeDebugWindow({ session, player, health, events, recovery, nowPlaying, history });

// The session before anything connects; then SSE, then the audio once play is pressed.
recovery.begin();
