// The page a signed-in account that is not an admin gets for a console address (HTTP 403).
import { boot } from "../shell.js";

await boot();
