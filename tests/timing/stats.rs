//! The statistics of a timing run: Welch's t-test with dudect's crops, the
//! class sequence, and the table every run prints.

/// Welch's t-test accumulated online (Welford), one accumulator per class.
#[derive(Clone, Copy, Default)]
pub struct Welch {
    n: [f64; 2],
    mean: [f64; 2],
    m2: [f64; 2],
}

impl Welch {
    pub fn push(&mut self, class: usize, x: f64) {
        self.n[class] += 1.0;
        let delta = x - self.mean[class];
        self.mean[class] += delta / self.n[class];
        self.m2[class] += delta * (x - self.mean[class]);
    }

    pub fn t(&self) -> f64 {
        if self.n[0] < 2.0 || self.n[1] < 2.0 {
            return 0.0;
        }
        let var = |c: usize| self.m2[c] / (self.n[c] - 1.0);
        let se = (var(0) / self.n[0] + var(1) / self.n[1]).sqrt();
        if se == 0.0 {
            return 0.0;
        }
        (self.mean[0] - self.mean[1]) / se
    }
}

/// The verdict on one pair of classes.
#[derive(Clone, Debug)]
pub struct Report {
    pub name: String,
    pub samples: usize,
    /// |t| on all samples.
    pub t_all: f64,
    /// dudect's statistic: the largest |t| over the uncropped test and the
    /// tests cropped at the percentiles in `CROPS`.
    pub t_max: f64,
    /// Mean time per call of each class, in nanoseconds (for the table only;
    /// nothing asserts on durations).
    pub mean_ns: [f64; 2],
}

/// dudect crops measurements above a set of percentiles, because preemption
/// and interrupts add long, rare outliers that hide a small, steady
/// difference; the statistic is the largest |t| over the crops.
const CROPS: [f64; 5] = [0.50, 0.75, 0.90, 0.95, 0.99];

pub fn analyse(name: &str, samples: &[(usize, u64)], per_sample: usize) -> Report {
    let mut sorted: Vec<u64> = samples.iter().map(|&(_, t)| t).collect();
    sorted.sort_unstable();
    let at = |p: f64| sorted[((sorted.len() - 1) as f64 * p) as usize];
    let cuts: Vec<u64> = CROPS.iter().map(|&p| at(p)).collect();
    let mut all = Welch::default();
    let mut cropped = vec![Welch::default(); cuts.len()];
    for &(class, t) in samples {
        all.push(class, t as f64);
        for (welch, &cut) in cropped.iter_mut().zip(&cuts) {
            if t <= cut {
                welch.push(class, t as f64);
            }
        }
    }
    let t_max = cropped
        .iter()
        .map(|w| w.t().abs())
        .fold(all.t().abs(), f64::max);
    Report {
        name: name.to_owned(),
        samples: samples.len(),
        t_all: all.t().abs(),
        t_max,
        mean_ns: [
            all.mean[0] / per_sample as f64,
            all.mean[1] / per_sample as f64,
        ],
    }
}

/// xorshift64*: the class of each sample is drawn from a fixed-seed
/// sequence, independent of anything the machine does.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub fn bit(&mut self) -> usize {
        (self.next() >> 63) as usize
    }

    /// A draw below `n` (small `n`), from the high bits: xorshift64*'s
    /// low bits are its weakest.
    pub fn below(&mut self, n: usize) -> usize {
        (((self.next() >> 32) * n as u64) >> 32) as usize
    }
}

pub fn print(reports: &[Report]) {
    eprintln!(
        "{:<40} {:>9} {:>9} {:>9} {:>10} {:>10}",
        "test", "samples", "|t| all", "|t| max", "ns/call A", "ns/call B"
    );
    for r in reports {
        eprintln!(
            "{:<40} {:>9} {:>9.2} {:>9.2} {:>10.1} {:>10.1}",
            r.name, r.samples, r.t_all, r.t_max, r.mean_ns[0], r.mean_ns[1]
        );
    }
}
