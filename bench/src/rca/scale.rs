//! Analysis time at 50 routers: a mesh (a ring and 25 chords, from a seed) with every
//! router's features and links measured for 30 calm intervals and 5 anomalous ones, one
//! link losing a fifth of its BFD in them; one analysis timed per run.

use rand::{RngExt, SeedableRng, rngs::StdRng};
use x0_brain::models::{
    features::{FEATURES, Features, LinkSample},
    rca::{Case, Interval, Method},
};

const ROUTERS: usize = 50;
const CALM: usize = 30;
const WINDOW: usize = 5;

/// p99 of `runs` analyses of the 50-router case, in ms.
pub fn p99_ms(method: &dyn Method, runs: usize) -> f64 {
    let (routers, links, intervals) = mesh();
    let case = Case {
        routers: &routers,
        links: &links,
        intervals: &intervals,
        normal: (0..CALM).collect(),
        anomalous: CALM..CALM + WINDOW,
    };
    let mut h = hdrhistogram::Histogram::<u64>::new(3).expect("3 digits");
    for _ in 0..runs.max(1) {
        let t = std::time::Instant::now();
        std::hint::black_box(method.rank(&case));
        let _ = h.record(t.elapsed().as_micros() as u64);
    }
    h.value_at_quantile(0.99) as f64 / 1000.0
}

type Mesh = (Vec<String>, Vec<(String, String)>, Vec<Interval>);

fn mesh() -> Mesh {
    let mut rng = StdRng::seed_from_u64(50);
    let name = |i: usize| format!("r{}", i + 1);
    let routers: Vec<String> = (0..ROUTERS).map(name).collect();
    let mut links: Vec<(String, String)> = (0..ROUTERS)
        .map(|i| (name(i), name((i + 1) % ROUTERS)))
        .collect();
    while links.len() < ROUTERS + 25 {
        let (a, b) = (rng.random_range(0..ROUTERS), rng.random_range(0..ROUTERS));
        let l = (name(a.min(b)), name(a.max(b)));
        if a != b && !links.iter().any(|x| *x == l || (x.1 == l.0 && x.0 == l.1)) {
            links.push(l);
        }
    }
    let intervals = (0..CALM + WINDOW)
        .map(|i| interval(&mut rng, &routers, &links, i >= CALM))
        .collect();
    (routers, links, intervals)
}

fn interval(
    rng: &mut StdRng,
    routers: &[String],
    links: &[(String, String)],
    lossy: bool,
) -> Interval {
    let features = routers
        .iter()
        .map(|_| {
            Some(
                std::array::from_fn::<f32, FEATURES, _>(|_| rng.random_range(0.0..0.2)) as Features,
            )
        })
        .collect();
    let links = routers
        .iter()
        .map(|r| {
            let ends = links.iter().filter_map(|(a, b)| match (a == r, b == r) {
                (true, _) => Some(b),
                (_, true) => Some(a),
                _ => None,
            });
            Some(ends.map(|n| sample(r, n, lossy)).collect())
        })
        .collect();
    Interval { features, links }
}

fn sample(r: &str, n: &str, lossy: bool) -> LinkSample {
    let bad = lossy && ((r, n) == ("r1", "r2") || (r, n) == ("r2", "r1"));
    LinkSample {
        neighbor: n.into(),
        bfd_up: true,
        bfd_expected: 100.0,
        bfd_received: if bad { 80.0 } else { 100.0 },
        rtt_ms: Some(0.2),
        utilisation: 0.01,
        carrier_downs: 0,
        brain_answered: true,
        cost: 10,
    }
}
