#!/usr/bin/env node
// A second, stricter DynamoDB-compatible test server: dynalite (npm), an
// independent implementation that enforces DynamoDB's limits (400 KB items,
// 2048-byte partition keys) and, like several compatible servers, returns
// no old item from a failed conditional write.
//
// For replay-guard's tests only (scripts/test.sh installs dynalite into
// .tools/). Usage: node scripts/dynalite_server.js [--port N]  (0: free port)
//
// - Listens on 127.0.0.1 only, never on another address.
// - Prints `PORT=<n>` on stdout once listening.
// - Exits on SIGTERM/SIGINT, or when its parent process dies, so
//   a crashed test run leaves no server behind.
// - Answers UpdateTimeToLive / DescribeTimeToLive itself (dynalite has no
//   TTL; it never deletes expired items, which every condition must
//   tolerate anyway), so `replay-guard init-table` runs unchanged.
'use strict'

const path = require('path')

function load () {
  const local = path.join(__dirname, '..', '.tools', 'node_modules', 'dynalite')
  try {
    return require(local)
  } catch (e) {
    return require('dynalite')
  }
}

const args = process.argv.slice(2)
const portAt = args.indexOf('--port')
const port = portAt >= 0 ? Number(args[portAt + 1]) : 0

const server = load()({ createTableMs: 0, deleteTableMs: 0, updateTableMs: 0 })
const dynalite = server.listeners('request')
server.removeAllListeners('request')
const ttl = new Map() // table name -> attribute name

server.on('request', (req, res) => {
  const target = String(req.headers['x-amz-target'] || '')
  if (!target.endsWith('.UpdateTimeToLive') && !target.endsWith('.DescribeTimeToLive')) {
    for (const listener of dynalite) listener.call(server, req, res)
    return
  }
  let body = ''
  req.on('data', (chunk) => { body += chunk })
  req.on('end', () => {
    let data = {}
    try { data = JSON.parse(body || '{}') } catch (e) {}
    let answer
    if (target.endsWith('.UpdateTimeToLive')) {
      const spec = data.TimeToLiveSpecification || {}
      if (spec.Enabled) ttl.set(data.TableName, spec.AttributeName)
      else ttl.delete(data.TableName)
      answer = { TimeToLiveSpecification: spec }
    } else {
      const name = ttl.get(data.TableName)
      answer = {
        TimeToLiveDescription: name
          ? { TimeToLiveStatus: 'ENABLED', AttributeName: name }
          : { TimeToLiveStatus: 'DISABLED' }
      }
    }
    const text = JSON.stringify(answer)
    res.setHeader('Content-Type', 'application/x-amz-json-1.0')
    res.setHeader('Content-Length', Buffer.byteLength(text))
    res.end(text)
  })
})

server.listen(port, '127.0.0.1', () => {
  process.stdout.write(`PORT=${server.address().port}\n`)
})

const stop = () => process.exit(0)
process.on('SIGTERM', stop)
process.on('SIGINT', stop)
const parent = process.ppid
setInterval(() => {
  try { process.kill(parent, 0) } catch (e) { stop() }
  if (process.ppid !== parent) stop()
}, 500).unref()
