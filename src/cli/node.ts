import type { Command } from 'commander';
import { loadConfig } from '../config/config.js';
import { startMember } from '../node/member.js';

export function registerNode(program: Command): void {
  program
    .command('node')
    .description(
      'run a federation member: EVM ingestion, signing rounds with the other members, settlement, HTTP API (see docs/config.md)',
    )
    .requiredOption('--config <file>', 'member config file (JSON); PEGOUT_* environment variables override its fields')
    .addHelpText(
      'after',
      '\nThe member key comes from memberKeyFile (mode 0600) or PEGOUT_MEMBER_KEY; it is never logged.\nLogs are JSON lines on stdout. SIGINT/SIGTERM stop the member cleanly.',
    )
    .action(async (opts: { config: string }) => {
      const config = await loadConfig(opts.config);
      const member = await startMember(config);
      await new Promise<void>((resolve) => {
        const stop = (): void => {
          process.off('SIGINT', stop);
          process.off('SIGTERM', stop);
          resolve();
        };
        process.on('SIGINT', stop);
        process.on('SIGTERM', stop);
      });
      await member.stop();
    });
}
