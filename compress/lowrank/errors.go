package lowrank

import "errors"

// Sentinel errors. Errors returned by this package wrap one of them, so
// callers can test with errors.Is.
var (
	// ErrShape is the panic value (wrapped) for a caller bug: a slice whose
	// length does not match the given dimensions, a rank outside its range.
	ErrShape = errors.New("lowrank: shape mismatch")
	// ErrNonFinite reports NaN or Inf values in a weight or a Gram matrix.
	ErrNonFinite = errors.New("lowrank: non-finite values")
	// ErrNoConvergence reports an SVD whose iteration did not converge.
	ErrNoConvergence = errors.New("lowrank: SVD did not converge")
	// ErrOption reports an invalid option value (energy outside (0,1], ...).
	ErrOption = errors.New("lowrank: invalid option")
	// ErrUnsupported reports a layer configuration that a scheme cannot
	// express (grouped conv, auto_pad SAME, non-2-D kernel for spatial, ...).
	ErrUnsupported = errors.New("lowrank: unsupported layer")
	// ErrBudget reports a parameter budget that cannot be met.
	ErrBudget = errors.New("lowrank: parameter budget cannot be met")
	// ErrCalibration reports unusable calibration statistics.
	ErrCalibration = errors.New("lowrank: unusable calibration statistics")
)
