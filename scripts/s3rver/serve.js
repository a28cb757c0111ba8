// Starts the pinned s3rver for the integration tests (tests/integration/services.py), on one
// address and port, with the access key pair the test chose instead of s3rver's built-in
// S3RVER/S3RVER. Prints one JSON line {"port": N} once it listens; SIGTERM stops it.
// s3rver does not verify SigV4 signatures: the tests put a verifying proxy in front of it.
//   node serve.js NODE_MODULES DIRECTORY ADDRESS PORT     (PORT 0: any free port)
//   env S3RVER_ACCESS_KEY, S3RVER_SECRET_KEY
'use strict';
const path = require('path');

const [modules, directory, address, port] = process.argv.slice(2);
const accessKey = process.env.S3RVER_ACCESS_KEY;
const secretKey = process.env.S3RVER_SECRET_KEY;
if (!modules || !directory || !address || port === undefined || !accessKey || !secretKey) {
  console.error('usage: S3RVER_ACCESS_KEY=.. S3RVER_SECRET_KEY=.. node serve.js NODE_MODULES DIRECTORY ADDRESS PORT');
  process.exit(2);
}

const S3rver = require(path.join(modules, 's3rver'));
// The same module instance s3rver uses for its account registry (resolved by absolute path).
const { DUMMY_ACCOUNT } = require(path.join(modules, 's3rver', 'lib', 'models', 'account'));
DUMMY_ACCOUNT.revokeAccessKey('S3RVER');
DUMMY_ACCOUNT.createKeyPair(accessKey, secretKey);

const server = new S3rver({
  directory,
  address,
  port: Number(port),
  silent: true,
  // Virtual-hosted-style requests name the bucket as <bucket>.s3.localhost.
  serviceEndpoint: 'localhost',
});
server.run().then(
  (bound) => console.log(JSON.stringify({ port: bound.port })),
  (error) => {
    console.error(`s3rver failed to start on ${address}:${port}: ${error.message}`);
    process.exit(1);
  },
);
process.on('SIGTERM', () => process.exit(0));
