// The same calls Backstage's OAuth2 client makes: /refresh on load, the
// /start popup, the frame's postMessage, and /logout.
(function () {
  'use strict';
  const params = new URLSearchParams(window.location.search);
  const env = params.get('env') || 'development';
  const base = window.location.origin + '/api/auth/spectrocloud';
  const scope = 'openid profile email';
  const $ = (id) => document.getElementById(id);

  function decodeJwt(token) {
    try {
      const part = token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
      const json = decodeURIComponent(Array.from(atob(part), (c) => '%' + c.charCodeAt(0).toString(16).padStart(2, '0')).join(''));
      return JSON.parse(json);
    } catch (e) {
      return { error: 'not a JWT' };
    }
  }

  function showError(message) {
    $('error').textContent = message;
    $('error').hidden = !message;
  }

  function show(session) {
    showError('');
    if (!session) {
      $('signed-in').hidden = true;
      $('signed-out').hidden = false;
      return;
    }
    const p = session.profile || {};
    $('display-name').textContent = p.displayName || '(no display name)';
    $('email').textContent = p.email || '(no verified email)';
    if (p.picture) { $('picture').src = p.picture; $('picture').hidden = false; } else { $('picture').hidden = true; }
    const bi = session.backstageIdentity || {};
    $('identity').textContent = JSON.stringify({ ...bi.identity, expiresInSeconds: bi.expiresInSeconds }, null, 2);
    $('backstage-claims').textContent = JSON.stringify(decodeJwt(bi.token || ''), null, 2);
    $('id-claims').textContent = JSON.stringify(decodeJwt((session.providerInfo || {}).idToken || ''), null, 2);
    $('signed-out').hidden = true;
    $('signed-in').hidden = false;
  }

  async function refresh() {
    const res = await fetch(`${base}/refresh?optional&scope=${encodeURIComponent(scope)}&env=${encodeURIComponent(env)}`, {
      headers: { 'x-requested-with': 'XMLHttpRequest' }, credentials: 'include',
    });
    if (!res.ok) return null;
    return res.json();
  }

  function signIn() {
    showError('');
    const url = `${base}/start?scope=${encodeURIComponent(scope)}&origin=${encodeURIComponent(window.location.origin)}&flow=popup&env=${encodeURIComponent(env)}`;
    const popup = window.open(url, 'SpectroCloud Login', 'width=450,height=730');
    if (!popup) { showError('The browser blocked the sign-in popup.'); return; }
    function onMessage(event) {
      if (event.source !== popup || event.origin !== window.location.origin) return;
      const data = event.data || {};
      if (data.type !== 'authorization_response') return;
      window.removeEventListener('message', onMessage);
      if (data.error) { showError(`${data.error.name}: ${data.error.message}`); return; }
      show(data.response);
    }
    window.addEventListener('message', onMessage);
  }

  async function signOut() {
    await fetch(`${base}/logout?env=${encodeURIComponent(env)}`, {
      method: 'POST', headers: { 'x-requested-with': 'XMLHttpRequest' }, credentials: 'include',
    });
    show(null);
  }

  $('env-name').textContent = env;
  $('sign-in').addEventListener('click', signIn);
  $('sign-out').addEventListener('click', signOut);
  refresh().then(show, () => show(null));
})();
