/** What other code (and the tests) may reuse from this plugin. */
export type {OpsHooks} from './hook-types.js'
export {isUnbounded, vetoReason} from './policy.js'
export {qualifiedName, WidgetTable} from './widget-table.js'
export type {WidgetFilter} from './widget-table.js'
