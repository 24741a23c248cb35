/** The app's version (kept with package.json); sent as `Rtot-Version` and printed by `--version`. */
export const VERSION = '0.1.0';
