// scripts/dynalite.js starts dynalite's command line (argv as for cli.js)
// and keeps it alive when a client aborts a request: dynalite 4.0.0 throws
// from the request's 'error' handler (index.js: req.on('error', ... throw)),
// so one client that drops a connection mid-request (a test cancelling a
// context, a fault-injection test losing a response) would otherwise kill
// the server and every table it holds in memory.
'use strict'
const path = require('path')
process.on('uncaughtException', (err) => {
  if (err && (err.code === 'ECONNRESET' || err.message === 'aborted')) {
    console.error('dynalite: a client aborted a request (' + (err.code || err.message) + '); still serving')
    return
  }
  console.error(err)
  process.exit(1)
})
const cli = process.argv[2]
process.argv.splice(2, 1)
require(path.resolve(cli))
