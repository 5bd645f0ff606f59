// Entry of the aisa-authz bin (bin/aisa-authz.js imports this through tsx).
import { runCli } from "./program.js";

process.exitCode = await runCli(process.argv);
