// Drives the Pterodactyl-compatible API with nodeactyl, unmodified, as a bot would.
// `node drive.js application` creates a user and a server; `node drive.js client` runs the
// server. Input comes from the environment; the outcome is one JSON line on stdout.
'use strict';
const { NodeactylApplication, NodeactylClient, ServerBuilder } = require('nodeactyl');

const env = process.env;

async function application() {
  const app = new NodeactylApplication(env.PANEL_URL, env.APPLICATION_KEY);
  const user = await app.createUser(env.USER_EMAIL, 'botuser', 'Bot', 'User', env.USER_PASSWORD);
  const server = await new ServerBuilder()
    .setServerName('nodeactyl server')
    .setServerOwner(user.attributes.id)
    .setServerEgg(Number(env.EGG_ID))
    .setServerDockerImage('stellar-test/fake-game:latest')
    .setServerStartup('/usr/local/bin/fake-game')
    .setServerLimitsJson({ memory: 512, swap: 0, disk: 1024, io: 500, cpu: 100 })
    .setServerEnvironmentJson({})
    .setServerDeployLocations([Number(env.LOCATION_ID)])
    .createServer(app);
  const details = await app.getServerDetails(server.attributes.id);
  return { user: user.attributes, server: server.attributes, details };
}

async function waitFor(client, id, state) {
  const deadline = Date.now() + 30000;
  let seen;
  while (Date.now() < deadline) {
    seen = await client.getServerStatus(id);
    if (seen === state) return seen;
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  throw new Error(`server stayed ${seen}, never ${state}`);
}

async function client() {
  const bot = new NodeactylClient(env.PANEL_URL, env.CLIENT_KEY);
  const servers = await bot.getAllServers();
  const id = servers.data[0].attributes.identifier;
  const details = await bot.getServerDetails(id);
  const started = await bot.startServer(id);
  const running = await waitFor(bot, id, 'running');
  const command = await bot.sendServerCommand(id, 'say hello from nodeactyl');
  const usages = await bot.getServerUsages(id);
  const backup = await bot.createServerBackup(id);
  const backups = await bot.listServerBackups(id);
  const killed = await bot.killServer(id);
  const stopped = await waitFor(bot, id, 'offline');
  let refused;
  try {
    await bot.sendServerCommand(id, 'say nobody hears this');
  } catch (status) {
    refused = status;
  }
  return {
    identifiers: servers.data.map((s) => s.attributes.identifier),
    details, started, running, command, usages, backup, backups, killed, stopped, refused,
  };
}

const phases = { application, client };
phases[process.argv[2]]().then(
  (outcome) => console.log(JSON.stringify(outcome)),
  (error) => {
    console.log(JSON.stringify({ error: String(error && error.message ? error.message : error) }));
    process.exit(1);
  },
);
