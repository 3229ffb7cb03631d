//! The batch report: `report.csv` (a row per photo) and `report.html` (counts,
//! referral and ungradable rates per site with their 95% intervals, a score
//! histogram, with labels the ROC curve with the model's operating point, and
//! the photos that need attention, linked into the review UI).

use std::fmt::Write as _;
use std::path::Path;

use db::batches::ReportRow;

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ReportSummary {
    pub photos: usize,
    pub scored: usize,
    pub dead: usize,
    pub pending: usize,
    pub rejected: usize,
    pub referable: usize,
    pub ungradable: usize,
    pub in_review: usize,
    /// With labels: over gradable photos with a label and a score.
    pub auc: Option<f64>,
    pub sensitivity: Option<f64>,
    pub specificity: Option<f64>,
    pub labelled: usize,
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

fn fmt_opt(v: Option<f32>) -> String {
    v.map(|x| format!("{x:.4}")).unwrap_or_default()
}

/// Writes the report into `out`; `review_url` is where the review UI is
/// reached (its links point there).
pub fn write_report(rows: &[ReportRow], rejected: &[(String, String)], out: &Path, review_url: &str) -> anyhow::Result<ReportSummary> {
    std::fs::create_dir_all(out)?;
    let mut w = csv::Writer::from_path(out.join("report.csv"))?;
    w.write_record([
        "name", "image_id", "state", "glaucoma", "gradable", "label", "review", "truth", "model", "version", "threshold", "attempts", "error", "heatmap",
    ])?;
    let mut s = ReportSummary { photos: rows.len() + rejected.len(), rejected: rejected.len(), ..Default::default() };
    for r in rows {
        match r.job_state.as_str() {
            "done" => s.scored += 1,
            "dead" => s.dead += 1,
            _ => s.pending += 1,
        }
        match r.label.as_deref() {
            Some("referable") => s.referable += 1,
            Some("ungradable") => s.ungradable += 1,
            _ => {}
        }
        if r.review_reason.is_some() {
            s.in_review += 1;
        }
        let truth = r.truth.map(|t| if t { "glaucoma" } else { "normal" }).unwrap_or("");
        let attempts = r.attempts.to_string();
        w.write_record([
            r.name.as_str(),
            &r.image_id.to_string(),
            &r.job_state,
            &fmt_opt(r.glaucoma_score),
            &fmt_opt(r.gradable_score),
            r.label.as_deref().unwrap_or(""),
            r.review_reason.as_deref().unwrap_or(""),
            truth,
            r.model_name.as_deref().unwrap_or(""),
            r.model_version.as_deref().unwrap_or(""),
            &fmt_opt(r.threshold),
            &attempts,
            r.last_error.as_deref().unwrap_or(""),
            r.heatmap_key.as_deref().unwrap_or(""),
        ])?;
    }
    for (name, why) in rejected {
        w.write_record([name.as_str(), "", "rejected", "", "", "", "", "", "", "", "", "0", why, ""])?;
    }
    w.flush()?;

    // Labelled, gradable, scored photos give the ROC and the operating point.
    let labelled: Vec<(f32, bool, f32)> = rows
        .iter()
        .filter(|r| r.label.as_deref().is_some_and(|l| l != "ungradable"))
        .filter_map(|r| Some((r.glaucoma_score?, r.truth?, r.threshold?)))
        .collect();
    s.labelled = labelled.len();
    let scores: Vec<f32> = labelled.iter().map(|x| x.0).collect();
    let truth: Vec<bool> = labelled.iter().map(|x| x.1).collect();
    let roc = model::metrics::roc_curve(&scores, &truth);
    if !roc.is_empty() {
        s.auc = Some(model::metrics::auc(&scores, &truth));
        let pos = truth.iter().filter(|&&t| t).count() as f64;
        let neg = truth.len() as f64 - pos;
        let tp = labelled.iter().filter(|x| x.1 && x.0 >= x.2).count() as f64;
        let tn = labelled.iter().filter(|x| !x.1 && x.0 < x.2).count() as f64;
        s.sensitivity = Some(tp / pos);
        s.specificity = Some(tn / neg);
    }
    std::fs::write(out.join("report.html"), html(&s, rows, &roc, review_url))?;
    std::fs::write(out.join("summary.json"), serde_json::to_string_pretty(&s)?)?;
    Ok(s)
}

fn pct(n: usize, d: usize) -> String {
    if d == 0 { "–".into() } else { format!("{:.1}%", 100.0 * n as f64 / d as f64) }
}

/// `k` of `n` as a percentage with its 95% Wilson interval.
fn rate(k: usize, n: usize) -> String {
    let r = review::stats::wilson(k as u64, n as u64);
    match (r.value, r.low, r.high) {
        (Some(v), Some(l), Some(h)) => format!("{:.1}% ({:.1}–{:.1}%)", 100.0 * v, 100.0 * l, 100.0 * h),
        _ => "–".into(),
    }
}

fn per_site(h: &mut String, rows: &[ReportRow]) {
    let mut sites: Vec<&str> = rows.iter().map(|r| r.site.as_str()).collect();
    sites.sort_unstable();
    sites.dedup();
    let _ = write!(
        h,
        "<h2>Rates per site</h2><p>With 95% Wilson intervals, over the photos scored.</p><table id=sites>\
         <tr><th>site</th><th>scored</th><th>referable</th><th>ungradable</th><th>sent to review</th></tr>"
    );
    for site in sites {
        let mine: Vec<&ReportRow> = rows.iter().filter(|r| r.site == site && r.label.is_some()).collect();
        let n = mine.len();
        let count = |l: &str| mine.iter().filter(|r| r.label.as_deref() == Some(l)).count();
        let review = mine.iter().filter(|r| r.review_reason.is_some()).count();
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{n}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(site),
            rate(count("referable"), n),
            rate(count("ungradable"), n),
            rate(review, n)
        );
    }
    let _ = write!(h, "</table>");
}

/// The ROC in a 200-unit square with labelled axes and the model's operating point.
fn roc_svg(h: &mut String, roc: &[model::metrics::RocPoint], sensitivity: f64, specificity: f64) {
    let _ = write!(
        h,
        "<svg id=roc width=320 height=300 viewBox='-50 -10 270 260' font-size=11>\
         <rect x=0 y=0 width=200 height=200 fill=none stroke=#999 />\
         <line x1=0 y1=200 x2=200 y2=0 stroke=#ccc stroke-dasharray=4 />"
    );
    for t in [0.0, 0.5, 1.0] {
        let p = 200.0 * t;
        let _ = write!(
            h,
            "<text x={p:.0} y=214 text-anchor=middle>{t}</text><text x=-6 y={:.0} text-anchor=end>{t}</text>",
            200.0 - p + 4.0
        );
    }
    let _ = write!(
        h,
        "<text x=100 y=232 text-anchor=middle>1 − specificity (false-positive rate)</text>\
         <text transform='translate(-34,100) rotate(-90)' text-anchor=middle>sensitivity</text>\
         <polyline fill=none stroke='#b33' stroke-width=2 points='0,200"
    );
    for p in roc {
        let _ = write!(h, " {:.1},{:.1}", 200.0 * p.fpr, 200.0 * (1.0 - p.tpr));
    }
    let (x, y) = (200.0 * (1.0 - specificity), 200.0 * (1.0 - sensitivity));
    let _ = write!(
        h,
        "' /><circle id=operating-point cx={x:.1} cy={y:.1} r=5 fill=none stroke=black stroke-width=2 />\
         <text x={:.1} y={:.1}>operating point</text></svg>",
        (x + 8.0).min(130.0),
        (y + 16.0).min(195.0)
    );
}

/// Photos a clinician must look at, or that could not be scored, linked to the review UI.
fn attention(h: &mut String, rows: &[ReportRow], review_url: &str) {
    let need: Vec<&ReportRow> = rows.iter().filter(|r| r.review_reason.is_some() || r.job_state == "dead").collect();
    if need.is_empty() {
        return;
    }
    let base = review_url.trim_end_matches('/');
    let _ = write!(h, "<h2>Needing attention ({})</h2><table id=attention><tr><th>photo</th><th>site</th><th>why</th><th>glaucoma</th></tr>", need.len());
    for r in need {
        let why = r.review_reason.as_deref().unwrap_or("scoring failed");
        let _ = write!(
            h,
            "<tr><td><a href='{}/review/images/{}'>{}</a></td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(base),
            r.image_id,
            esc(&r.name),
            esc(&r.site),
            esc(why),
            fmt_opt(r.glaucoma_score)
        );
    }
    let _ = write!(h, "</table>");
}

fn html(s: &ReportSummary, rows: &[ReportRow], roc: &[model::metrics::RocPoint], review_url: &str) -> String {
    let mut h = String::new();
    let _ = write!(
        h,
        "<!doctype html><meta charset=utf-8><title>Fundus batch report</title>\
         <style>body{{font:14px system-ui,sans-serif;margin:2em;max-width:60em}}td,th{{padding:.2em .8em;text-align:left}}</style>\
         <h1>Batch screening report</h1><table>\
         <tr><th>photos</th><td>{}</td></tr><tr><th>scored</th><td>{}</td></tr>\
         <tr><th>dead-lettered</th><td>{}</td></tr><tr><th>rejected at registration</th><td>{}</td></tr>\
         <tr><th>not finished</th><td>{}</td></tr>\
         <tr><th>referable</th><td>{} ({} of scored)</td></tr><tr><th>ungradable</th><td>{} ({} of scored)</td></tr>\
         <tr><th>sent to review</th><td>{}</td></tr></table>",
        s.photos, s.scored, s.dead, s.rejected, s.pending, s.referable, pct(s.referable, s.scored), s.ungradable, pct(s.ungradable, s.scored), s.in_review
    );
    per_site(&mut h, rows);
    // Histogram of glaucoma scores, 20 bins.
    let mut bins = [0usize; 20];
    for r in rows {
        if let Some(g) = r.glaucoma_score {
            bins[((g * 20.0) as usize).min(19)] += 1;
        }
    }
    let top = (*bins.iter().max().unwrap_or(&1)).max(1) as f32;
    let _ = write!(h, "<h2>Glaucoma scores</h2><svg width=420 height=170 viewBox='0 0 420 170'>");
    for (i, &b) in bins.iter().enumerate() {
        let bh = 140.0 * b as f32 / top;
        let _ = write!(h, "<rect x={} y={:.1} width=18 height={:.1} fill='#b33'><title>{:.2}–{:.2}: {b}</title></rect>", 10 + i * 20, 150.0 - bh, bh, i as f32 / 20.0, (i + 1) as f32 / 20.0);
    }
    let _ = write!(h, "<line x1=10 y1=150 x2=410 y2=150 stroke=black /><text x=10 y=165>0</text><text x=400 y=165>1</text></svg>");
    if let (Some(auc), Some(se), Some(sp)) = (s.auc, s.sensitivity, s.specificity) {
        let _ = write!(
            h,
            "<h2>Against the labels ({} gradable labelled photos)</h2><table><tr><th>AUC</th><td>{auc:.4}</td></tr>\
             <tr><th>sensitivity at the model's threshold</th><td>{se:.3}</td></tr><tr><th>specificity</th><td>{sp:.3}</td></tr></table>",
            s.labelled
        );
        roc_svg(&mut h, roc, se, sp);
    }
    attention(&mut h, rows, review_url);
    let failed: Vec<&ReportRow> = rows.iter().filter(|r| r.job_state == "dead").collect();
    if !failed.is_empty() {
        let _ = write!(h, "<h2>Dead-lettered</h2><table><tr><th>photo</th><th>last error</th></tr>");
        for r in failed {
            let _ = write!(h, "<tr><td>{}</td><td>{}</td></tr>", esc(&r.name), esc(r.last_error.as_deref().unwrap_or("")));
        }
        let _ = write!(h, "</table>");
    }
    h
}
