package merge

// The random drops of DARE come from a counter-based generator, so that the
// mask of an entry depends only on (seed, tensor, model, index): a merge run
// with any number of workers, in any order, in chunks or whole, draws the
// same mask, and an independent implementation can reproduce it.
//
//	mix(x)        = SplitMix64 output function of x + 0x9E3779B97F4A7C15
//	key           = mix(uint64(seed) + mix(fnv1a64(tensor) + uint64(model)))
//	Uniform(k, j) = (mix(k + uint64(j)·0x9E3779B97F4A7C15) >> 11) · 2⁻⁵³
//
// All arithmetic wraps modulo 2⁶⁴.

const golden = 0x9E3779B97F4A7C15

// mix is the SplitMix64 step: add the golden gamma, then the finalizer.
func mix(x uint64) uint64 {
	z := x + golden
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9
	z = (z ^ (z >> 27)) * 0x94D049BB133111EB
	return z ^ (z >> 31)
}

// fnv1a64 is the 64-bit FNV-1a hash of s.
func fnv1a64(s string) uint64 {
	h := uint64(0xcbf29ce484222325)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= 0x100000001b3
	}
	return h
}

// StreamKey returns the random stream of model index model (0-based, in the
// order the models are given) for the tensor named tensor (the output's
// name) under seed.
func StreamKey(seed int64, tensor string, model int) uint64 {
	return mix(uint64(seed) + mix(fnv1a64(tensor)+uint64(model)))
}

// Uniform returns the j-th uniform number in [0, 1) of stream key.
func Uniform(key uint64, j int64) float64 {
	return float64(mix(key+uint64(j)*golden)>>11) * (1.0 / (1 << 53))
}
