/** The app's version (kept with package.json); printed by `--version`. */
export const VERSION = '0.1.0';
