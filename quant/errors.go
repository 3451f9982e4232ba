package quant

import "errors"

// Sentinel errors; errors returned by this package wrap one of them where it
// applies, so callers can test with errors.Is.
var (
	// ErrShape reports a slice whose length does not match the shape passed
	// with it (a caller bug: functions panic with it).
	ErrShape = errors.New("quant: slice length does not match shape")
	// ErrBlockSize reports a block size that is not a power of two ≥ 16.
	ErrBlockSize = errors.New("quant: block size must be a power of two ≥ 16")
	// ErrBits reports an unsupported bit width.
	ErrBits = errors.New("quant: unsupported bit width")
	// ErrNonFinite reports a NaN or infinite weight or statistic.
	ErrNonFinite = errors.New("quant: non-finite value")
	// ErrCalibration reports missing or unusable calibration data.
	ErrCalibration = errors.New("quant: calibration data")
	// ErrAlreadyQuantized reports a model that already holds quantized ops.
	ErrAlreadyQuantized = errors.New("quant: model is already quantized")
	// ErrOptions reports an invalid combination of options.
	ErrOptions = errors.New("quant: invalid options")
	// ErrUnsupported reports a model the chosen mode cannot handle (an
	// opset too old for the ops it needs, for instance).
	ErrUnsupported = errors.New("quant: model not supported by this mode")
)
