//go:build !unix

package safefile

// oNonblock is 0 where the platform has no O_NONBLOCK (no FIFOs to fear).
const oNonblock = 0
