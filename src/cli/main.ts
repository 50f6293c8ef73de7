import { Command } from 'commander';
import { registerAdmin } from './admin.js';
import { registerAudit } from './audit.js';
import { registerCeremony } from './ceremony.js';
import { registerDevnet } from './devnet.js';
import { registerEvm } from './evm.js';
import { registerFederation } from './federation.js';
import { registerKeygen } from './keygen.js';
import { registerNode } from './node.js';
import { runCli } from './output.js';
import { registerReserves } from './reserves.js';
import { registerRotation } from './rotation.js';
import { registerStatus } from './status.js';

const program = new Command('pegout')
  .description(
    'Peg-out federation service for the Alys sidechain: run a member, a devnet, or the offline ceremony tools',
  )
  .showHelpAfterError('(run with --help for usage)')
  .configureHelp({ showGlobalOptions: true });

// Each command module registers itself here, one line each.
registerNode(program);
registerFederation(program);
registerKeygen(program);
registerCeremony(program);
registerDevnet(program);
registerEvm(program);
registerStatus(program);
registerAudit(program);
registerAdmin(program);
registerReserves(program);
registerRotation(program);

// `pegout … | head`: a reader that went away is the end of the output, not a crash
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  if (err.code !== 'EPIPE') throw err;
  process.exit(0);
});

await runCli(program, process.argv);
