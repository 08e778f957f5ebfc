// Package logs builds rotator's logger (zerolog) and names the fields every
// log line uses, so that a query written against one run's logs works on
// every run's.
//
// Terms:
//   - Logger in the context: cmd puts the logger into the context
//     (zerolog's Logger.WithContext) and everything below reads it back with
//     zerolog.Ctx. Libraries never log on their own account: they return
//     errors. Only the places that observe what an operator may want to see
//     at debug level and that no error reports (an SDK attempt that failed
//     and was retried, a throttle, a wait for an HSM session) log, through
//     the logger of the context they were given; without one they log
//     nothing.
//   - Format: JSON lines (one object per line: level, time, message and the
//     fields below) when stderr is not a terminal, zerolog's console format
//     on a terminal; Options.Format forces either.
//   - Levels: error (the run stopped), warn (an object failed, changed under
//     the run or is unfinished; the run was interrupted), info (every other
//     object outcome, the start and the summary of a run), debug (each
//     failed SDK attempt, throttles, pacing changes, waits for an HSM
//     session).
//   - Fixed field names: the constants below. Values that are secrets (PINs,
//     plaintext data keys, key material) are never logged: their types
//     (hsmpool.PIN, envelope.DataKey) marshal as **redacted** through every
//     zerolog method, and key specs are logged through rewrap.RedactSpec.
package logs
