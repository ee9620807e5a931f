package main

import (
	"math"
	"slices"
	"time"
)

// Dist summarises a set of timings in milliseconds. N is 0 when nothing
// was measured.
type Dist struct {
	N    int     `json:"n"`
	P50  float64 `json:"p50"`
	P99  float64 `json:"p99"`
	Mean float64 `json:"mean"`
	Min  float64 `json:"min"`
	Max  float64 `json:"max"`
}

// summarize returns the distribution of ds. Percentiles interpolate
// linearly between the two nearest ranks, so the p50 of an even number of
// samples is the mean of the middle two.
func summarize(ds []time.Duration) Dist {
	if len(ds) == 0 {
		return Dist{}
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	var sum time.Duration
	for _, d := range s {
		sum += d
	}
	return Dist{
		N:    len(s),
		P50:  ms(percentile(s, 0.50)),
		P99:  ms(percentile(s, 0.99)),
		Mean: ms(sum / time.Duration(len(s))),
		Min:  ms(s[0]),
		Max:  ms(s[len(s)-1]),
	}
}

// percentile is the p-quantile (0 ≤ p ≤ 1) of sorted, which is not empty.
func percentile(sorted []time.Duration, p float64) time.Duration {
	pos := p * float64(len(sorted)-1)
	lo := int(math.Floor(pos))
	hi := int(math.Ceil(pos))
	frac := pos - float64(lo)
	return sorted[lo] + time.Duration(frac*float64(sorted[hi]-sorted[lo]))
}

// ms converts d to milliseconds, rounded to the microsecond.
func ms(d time.Duration) float64 {
	return round3(float64(d) / float64(time.Millisecond))
}

// ratio is a/b rounded to three decimals, or 0 when either is unknown.
func ratio(a, b float64) float64 {
	if a <= 0 || b <= 0 {
		return 0
	}
	return round3(a / b)
}

func round3(x float64) float64 { return math.Round(x*1000) / 1000 }
