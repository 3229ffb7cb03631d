//! Monitoring the model in the field from reviewed photos only: sensitivity
//! and specificity against the final human outcome with Wilson intervals, the
//! miss rate the QA sample finds, Cohen's kappa, turnaround, the backlog, and
//! per-reader figures. Every figure carries its n.

use serde::Serialize;
use uuid::Uuid;

/// A proportion with its 95% Wilson score interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Rate {
    pub value: Option<f64>,
    pub low: Option<f64>,
    pub high: Option<f64>,
    pub k: u64,
    pub n: u64,
}

/// `k` of `n`, with the 95% Wilson interval (no value when n is 0).
pub fn wilson(k: u64, n: u64) -> Rate {
    if n == 0 {
        return Rate { value: None, low: None, high: None, k, n };
    }
    let z = 1.959_963_984_540_054_f64;
    let (kf, nf) = (k as f64, n as f64);
    let p = kf / nf;
    let denom = 1.0 + z * z / nf;
    let centre = (p + z * z / (2.0 * nf)) / denom;
    let half = z * (p * (1.0 - p) / nf + z * z / (4.0 * nf * nf)).sqrt() / denom;
    Rate { value: Some(p), low: Some((centre - half).max(0.0)), high: Some((centre + half).min(1.0)), k, n }
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Kappa {
    pub value: Option<f64>,
    pub n: u64,
}

const CATEGORIES: [&str; 3] = ["referable", "not_referable", "ungradable"];

/// The model says `non_referable` where a reader says `not_referable`.
fn category(label: &str) -> Option<usize> {
    let l = if label == "non_referable" { "not_referable" } else { label };
    CATEGORIES.iter().position(|c| *c == l)
}

/// Cohen's kappa over (rater A, rater B, count) rows; no value when the
/// raters' chance agreement is total (one category only) or n is 0.
pub fn cohen_kappa<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str, u64)>) -> Kappa {
    let mut m = [[0u64; 3]; 3];
    for (a, b, n) in pairs {
        if let (Some(i), Some(j)) = (category(a), category(b)) {
            m[i][j] += n;
        }
    }
    let n: u64 = m.iter().flatten().sum();
    if n == 0 {
        return Kappa { value: None, n };
    }
    let nf = n as f64;
    let po = (0..3).map(|i| m[i][i]).sum::<u64>() as f64 / nf;
    let pe: f64 = (0..3)
        .map(|i| {
            let row: u64 = m[i].iter().sum();
            let col: u64 = (0..3).map(|r| m[r][i]).sum();
            (row as f64 / nf) * (col as f64 / nf)
        })
        .sum();
    let value = if (1.0 - pe).abs() < 1e-12 { None } else { Some((po - pe) / (1.0 - pe)) };
    Kappa { value, n }
}

#[derive(Debug, Clone, Serialize)]
pub struct ModelStats {
    pub model: String,
    pub version: String,
    /// Of photos humans finally called referable, how many the model referred.
    pub sensitivity: Rate,
    /// Of photos humans finally called not referable, how many the model did not refer.
    pub specificity: Rate,
    /// Of the blinded QA reads of photos the model called non-referable, how
    /// many a human finally called referable.
    pub qa_miss_rate: Rate,
    pub kappa_reader_model: Kappa,
    /// Decided photos behind these figures.
    pub reviewed: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ReaderFigures {
    pub name: String,
    pub reads: u64,
    /// Of their reads of decided photos, how many matched the final outcome.
    pub agreement: Rate,
    pub median_secs_per_read: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Stats {
    pub models: Vec<ModelStats>,
    pub kappa_reader_reader: Kappa,
    pub turnaround: Turnaround,
    pub backlog: Backlog,
    pub readers: Vec<ReaderFigures>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Turnaround {
    pub n: u64,
    pub p50_secs: Option<f64>,
    pub p90_secs: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Backlog {
    pub under_1h: u64,
    pub under_1d: u64,
    pub under_7d: u64,
    pub over_7d: u64,
    pub oldest_age_secs: Option<f64>,
}

fn model_stats(outcomes: &[db::review::OutcomeCount], pairs: &[db::review::PairCount]) -> Vec<ModelStats> {
    let mut keys: Vec<(String, String)> = outcomes.iter().map(|o| (o.model_name.clone(), o.model_version.clone())).collect();
    keys.extend(pairs.iter().map(|p| (p.model_name.clone(), p.model_version.clone())));
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .map(|(model, version)| {
            let mine = || outcomes.iter().filter(|o| o.model_name == model && o.model_version == version);
            let count = |f: &dyn Fn(&db::review::OutcomeCount) -> bool| mine().filter(|o| f(o)).map(|o| o.n as u64).sum::<u64>();
            let tp = count(&|o| o.model_label == "referable" && o.final_decision == "referable");
            let fneg = count(&|o| o.model_label == "non_referable" && o.final_decision == "referable");
            let tn = count(&|o| o.model_label == "non_referable" && o.final_decision == "not_referable");
            let fp = count(&|o| o.model_label == "referable" && o.final_decision == "not_referable");
            let qa_reads = count(&|o| o.reason == "qa_sample");
            let qa_missed = count(&|o| o.reason == "qa_sample" && o.final_decision == "referable");
            let kappa = cohen_kappa(
                pairs
                    .iter()
                    .filter(|p| p.model_name == model && p.model_version == version)
                    .map(|p| (p.reader.as_str(), p.model.as_str(), p.n as u64)),
            );
            ModelStats {
                sensitivity: wilson(tp, tp + fneg),
                specificity: wilson(tn, tn + fp),
                qa_miss_rate: wilson(qa_missed, qa_reads),
                kappa_reader_model: kappa,
                reviewed: count(&|_| true),
                model,
                version,
            }
        })
        .collect()
}

/// Every monitoring figure over the given sites.
pub async fn stats(pool: &db::PgPool, sites: &[Uuid]) -> db::Result<Stats> {
    use db::review as r;
    let outcomes = r::stats_outcomes(pool, sites).await?;
    let pairs = r::stats_reader_model(pool, sites).await?;
    let rr = r::stats_reader_reader(pool, sites).await?;
    let t = r::stats_turnaround(pool, sites).await?;
    let b = r::stats_backlog(pool, sites).await?;
    let readers = r::stats_readers(pool, sites).await?;
    Ok(Stats {
        models: model_stats(&outcomes, &pairs),
        kappa_reader_reader: cohen_kappa(rr.iter().map(|p| (p.first.as_str(), p.second.as_str(), p.n as u64))),
        turnaround: Turnaround { n: t.n as u64, p50_secs: t.p50, p90_secs: t.p90 },
        backlog: Backlog {
            under_1h: b.under_1h as u64,
            under_1d: b.under_1d as u64,
            under_7d: b.under_7d as u64,
            over_7d: b.over_7d as u64,
            oldest_age_secs: b.oldest.map(|o| (chrono::Utc::now() - o).num_milliseconds() as f64 / 1000.0),
        },
        readers: readers
            .into_iter()
            .map(|x| ReaderFigures {
                name: x.name,
                reads: x.reads as u64,
                agreement: wilson(x.agreed as u64, x.decided as u64),
                median_secs_per_read: x.median_secs,
            })
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wilson_matches_published_values() {
        // Newcombe (1998), method 3: 81/263 -> 0.2553 to 0.3662.
        let r = wilson(81, 263);
        assert!((r.low.expect("low") - 0.2553).abs() < 5e-4, "{r:?}");
        assert!((r.high.expect("high") - 0.3662).abs() < 5e-4, "{r:?}");
        // 0 of 10 still has an upper bound; 10 of 10 a lower one.
        assert!(wilson(0, 10).low == Some(0.0) && (wilson(0, 10).high.expect("high") - 0.2775).abs() < 5e-4);
        assert!((wilson(10, 10).low.expect("low") - 0.7225).abs() < 5e-4);
        assert_eq!(wilson(0, 0).value, None);
    }

    #[test]
    fn kappa_of_perfect_chance_and_worse_agreement() {
        let perfect = cohen_kappa([("referable", "referable", 20), ("not_referable", "non_referable", 30)]);
        assert!((perfect.value.expect("kappa") - 1.0).abs() < 1e-12);
        assert_eq!(perfect.n, 50);
        // Fleiss's textbook table: po = 0.70, pe = 0.50 -> kappa 0.40.
        let k = cohen_kappa([
            ("referable", "referable", 20),
            ("referable", "not_referable", 5),
            ("not_referable", "referable", 10),
            ("not_referable", "not_referable", 15),
        ]);
        assert!((k.value.expect("kappa") - 0.4).abs() < 1e-12, "{k:?}");
        let opposite = cohen_kappa([("referable", "not_referable", 5), ("not_referable", "referable", 5)]);
        assert!(opposite.value.expect("kappa") < 0.0);
        assert_eq!(cohen_kappa([("referable", "referable", 5)]).value, None);
    }
}
