//! The batch report: `report.csv` (a row per photo) and `report.html` (counts,
//! referral and ungradable rates, a score histogram, and with labels the ROC
//! curve with sensitivity and specificity at the model's threshold).

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

pub fn write_report(rows: &[ReportRow], rejected: &[(String, String)], out: &Path) -> anyhow::Result<ReportSummary> {
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
    std::fs::write(out.join("report.html"), html(&s, rows, &roc))?;
    std::fs::write(out.join("summary.json"), serde_json::to_string_pretty(&s)?)?;
    Ok(s)
}

fn pct(n: usize, d: usize) -> String {
    if d == 0 { "–".into() } else { format!("{:.1}%", 100.0 * n as f64 / d as f64) }
}

fn html(s: &ReportSummary, rows: &[ReportRow], roc: &[model::metrics::RocPoint]) -> String {
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
             <tr><th>sensitivity at the model's threshold</th><td>{se:.3}</td></tr><tr><th>specificity</th><td>{sp:.3}</td></tr></table>\
             <svg width=260 height=260 viewBox='-10 -10 220 220'><rect x=0 y=0 width=200 height=200 fill=none stroke=#999 />\
             <line x1=0 y1=200 x2=200 y2=0 stroke=#ccc stroke-dasharray=4 /><polyline fill=none stroke='#b33' stroke-width=2 points='0,200",
            s.labelled
        );
        for p in roc {
            let _ = write!(h, " {:.1},{:.1}", 200.0 * p.fpr, 200.0 * (1.0 - p.tpr));
        }
        let _ = write!(h, "' /><text x=60 y=215>1 − specificity</text></svg>");
    }
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
