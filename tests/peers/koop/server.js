// Koop as an independent ArcGIS token + FeatureServer peer for tests/test_koop_peer.py.
// Loopback only, test accounts only (user-store.json). Start it from this folder: Koop resolves
// `dataDir` against the working directory. Environment:
//   PORT (8080), HOST (127.0.0.1), KOOP_NAMESPACE (file-geojson; "arcgis" gives ArcGIS Server-like
//   URLs), KOOP_SECRET (HS256 signing secret), KOOP_TOKEN_MINUTES (integer >= 5),
//   KOOP_LOG_LEVEL (warn), KOOP_TOKEN_SHIM=1 (off by default; see below).
const path = require('path');
const Koop = require('@koopjs/koop-core');

const auth = require('@koopjs/auth-direct-file')(
  process.env.KOOP_SECRET || 'test-secret',
  path.join(__dirname, 'user-store.json'),
  {
    tokenExpirationMinutes: Number(process.env.KOOP_TOKEN_MINUTES || 60),
    useHttp: true, // tokenServicesUrl in /rest/info says http:// (the peer has no TLS)
  },
);

// Optional, off by default: also accept a token in the POST body or in an
// `Authorization: Bearer` / `X-Esri-Authorization: Bearer` header, which auth-direct-file 2.0.3
// does not. The tests run Koop as it ships, so they never set this.
if (process.env.KOOP_TOKEN_SHIM === '1') {
  const authorize = auth.authorize;
  auth.authorize = async (req) => {
    const header = (name) => (req.headers[name] || '').replace(/^Bearer /, '');
    if (!req.query.token) {
      const token = (req.body && req.body.token) || header('x-esri-authorization') || header('authorization');
      if (token) req.query.token = token;
    }
    return authorize(req);
  };
}

const provider = require('@koopjs/provider-file-geojson');
const koop = new Koop({ logLevel: process.env.KOOP_LOG_LEVEL || 'warn' });
koop.register(auth); // before the provider, or the provider is not secured
koop.register(provider, { dataDir: 'data', name: process.env.KOOP_NAMESPACE || 'file-geojson' });
koop.server.listen(Number(process.env.PORT || 8080), process.env.HOST || '127.0.0.1');
