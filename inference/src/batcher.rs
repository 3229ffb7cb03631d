//! The model thread: one OS thread owns the model (GPU or CPU) and runs it on
//! batches gathered from many callers: it waits for a first photo, then up to
//! `max_wait` for more, up to `max_batch`. A panic while scoring fails only
//! the photo that caused it: the batch is retried one photo at a time.
//! The model can be swapped between batches (a moved MLflow alias); each
//! answer names the model that produced it.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, sync_channel};
use std::time::{Duration, Instant};

use model::Scorer;
use tch::Tensor;
use uuid::Uuid;

use crate::route::{Decision, Routing};

/// A loaded model and the names it is recorded under.
pub struct Loaded {
    pub scorer: Scorer,
    pub name: String,
    pub version: String,
    /// The `model_versions` row (nil offline, where there is no database).
    pub version_id: Uuid,
}

/// Which model answered, shared by every answer it gave.
#[derive(Debug, Clone)]
pub struct ModelInfo {
    pub name: String,
    pub version: String,
    pub version_id: Uuid,
    pub threshold: f32,
    /// The uncertain band's factor in odds, from the model card.
    pub uncertain_odds: Option<f32>,
    pub size: u32,
    pub preprocessing: imaging::Preprocessing,
}

impl ModelInfo {
    /// Where this model's uncertain band starts under `routing`.
    pub fn band_floor(&self, routing: &Routing) -> f32 {
        crate::route::band_floor(self.threshold, routing.odds(self.uncertain_odds))
    }
}

#[derive(Debug, Clone)]
pub struct Scored {
    pub glaucoma: f32,
    pub gradable: f32,
    pub decision: Decision,
    /// Heatmap (one value in 0..1 per input pixel) for photos routed to review.
    pub map: Option<Vec<f32>>,
    pub model: Arc<ModelInfo>,
}

pub type Reply = Box<dyn FnOnce(Result<Scored, String>) + Send>;

/// One preprocessed photo: u8 CHW, made with `prep`.
pub struct Item {
    pub chw: Vec<u8>,
    pub prep: imaging::Preprocessing,
    pub reply: Reply,
}

enum Msg {
    Score(Item),
    Swap(Box<Loaded>),
}

#[derive(Debug, Clone, Copy)]
pub struct BatchConfig {
    pub max_batch: usize,
    pub max_wait: Duration,
}

/// What the model thread reports after each batch (for metrics).
#[derive(Debug, Clone, Copy)]
pub struct BatchStats {
    pub size: usize,
    pub seconds: f64,
}

#[derive(Clone)]
pub struct Batcher {
    tx: SyncSender<Msg>,
    current: Arc<std::sync::Mutex<Arc<ModelInfo>>>,
}

fn info(l: &Loaded) -> Arc<ModelInfo> {
    Arc::new(ModelInfo {
        name: l.name.clone(),
        version: l.version.clone(),
        version_id: l.version_id,
        threshold: l.scorer.card.threshold,
        uncertain_odds: l.scorer.card.uncertain_odds,
        size: l.scorer.size(),
        preprocessing: l.scorer.card.preprocessing.clone(),
    })
}

impl Batcher {
    /// Starts the model thread. It ends when every `Batcher` clone is dropped.
    pub fn start(
        model: Loaded,
        cfg: BatchConfig,
        routing: Routing,
        on_batch: impl Fn(BatchStats) + Send + 'static,
    ) -> Batcher {
        let (tx, rx) = sync_channel(cfg.max_batch * 4);
        let current = Arc::new(std::sync::Mutex::new(info(&model)));
        let shown = current.clone();
        std::thread::Builder::new()
            .name("model".into())
            .spawn(move || run(model, rx, cfg, routing, shown, on_batch))
            .expect("spawning the model thread");
        Batcher { tx, current }
    }

    /// The model answering now (its size and preprocessing are what to feed it).
    pub fn model(&self) -> Arc<ModelInfo> {
        self.current.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Queues a photo; blocks while the queue is full. Err when the thread is gone.
    pub fn submit(&self, item: Item) -> Result<(), String> {
        self.tx.send(Msg::Score(item)).map_err(|_| "model_stopped: the model thread has stopped".to_owned())
    }

    /// From async code: queues the photo and awaits its scores.
    pub async fn score(&self, chw: Vec<u8>, prep: imaging::Preprocessing) -> Result<Scored, String> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let item = Item { chw, prep, reply: Box::new(move |r| drop(tx.send(r))) };
        // A blocking thread only when the queue is full (backpressure).
        match self.tx.try_send(Msg::Score(item)) {
            Ok(()) => {}
            Err(std::sync::mpsc::TrySendError::Full(msg)) => {
                let tx = self.tx.clone();
                tokio::task::spawn_blocking(move || tx.send(msg))
                    .await
                    .map_err(|e| e.to_string())?
                    .map_err(|_| "model_stopped: the model thread has stopped".to_owned())?;
            }
            Err(std::sync::mpsc::TrySendError::Disconnected(_)) => return Err("model_stopped: the model thread has stopped".to_owned()),
        }
        rx.await.map_err(|_| "model_stopped: the model thread dropped the photo".to_owned())?
    }

    /// Replaces the model after the batch in progress.
    pub fn swap(&self, model: Loaded) -> Result<(), String> {
        self.tx.send(Msg::Swap(Box::new(model))).map_err(|_| "model_stopped: the model thread has stopped".to_owned())
    }
}

fn run(
    mut model: Loaded,
    rx: Receiver<Msg>,
    cfg: BatchConfig,
    routing: Routing,
    shown: Arc<std::sync::Mutex<Arc<ModelInfo>>>,
    on_batch: impl Fn(BatchStats),
) {
    let mut current = info(&model);
    let mut batch: Vec<Item> = Vec::with_capacity(cfg.max_batch);
    let mut pending_swap: Option<Box<Loaded>> = None;
    loop {
        // Wait for a first photo, then gather more until full or max_wait.
        match rx.recv() {
            Ok(Msg::Score(it)) => batch.push(it),
            Ok(Msg::Swap(m)) => pending_swap = Some(m),
            Err(_) => return,
        }
        let deadline = Instant::now() + cfg.max_wait;
        while !batch.is_empty() && batch.len() < cfg.max_batch && pending_swap.is_none() {
            match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(Msg::Score(it)) => batch.push(it),
                Ok(Msg::Swap(m)) => pending_swap = Some(m),
                Err(RecvTimeoutError::Timeout) => break,
                Err(RecvTimeoutError::Disconnected) => break,
            }
        }
        if !batch.is_empty() {
            let t = Instant::now();
            let n = batch.len();
            score_batch(&model.scorer, &current, routing, std::mem::take(&mut batch));
            on_batch(BatchStats { size: n, seconds: t.elapsed().as_secs_f64() });
        }
        if let Some(m) = pending_swap.take() {
            tracing::info!(from = %model.version, to = %m.version, "model swapped");
            model = *m;
            current = info(&model);
            *shown.lock().unwrap_or_else(|p| p.into_inner()) = current.clone();
        }
    }
}

fn score_batch(scorer: &Scorer, info: &Arc<ModelInfo>, routing: Routing, items: Vec<Item>) {
    let len = info.preprocessing.input_len();
    // A photo preprocessed for another model (one swapped in meanwhile) goes back.
    let (items, stale): (Vec<Item>, Vec<Item>) = items.into_iter().partition(|i| i.prep == info.preprocessing && i.chw.len() == len);
    for it in stale {
        (it.reply)(Err(format!("model_changed: preprocessed for another model than {} {}", info.name, info.version)));
    }
    if items.is_empty() {
        return;
    }
    match catch_unwind(AssertUnwindSafe(|| forward(scorer, info, routing, &items))) {
        Ok(scored) => {
            for (it, s) in items.into_iter().zip(scored) {
                (it.reply)(Ok(s));
            }
        }
        Err(_) if items.len() > 1 => {
            for it in items {
                score_batch(scorer, info, routing, vec![it]);
            }
        }
        Err(p) => {
            let msg = p.downcast_ref::<String>().cloned().or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()));
            let it = items.into_iter().next().expect("one item");
            (it.reply)(Err(format!("model_panic: {}", msg.unwrap_or_default())));
        }
    }
}

fn forward(scorer: &Scorer, info: &Arc<ModelInfo>, routing: Routing, items: &[Item]) -> Vec<Scored> {
    let p = &info.preprocessing;
    let n = items.len() as i64;
    let mut flat = Vec::with_capacity(items.len() * p.input_len());
    for it in items {
        flat.extend_from_slice(&it.chw);
    }
    let x = Tensor::from_slice(&flat).view([n, 3, i64::from(p.size), i64::from(p.width())]);
    // Our own nets give their activation map with the scores, nearly free;
    // a TorchScript model needs a second, gradient pass for the routed photos.
    let cheap_maps = scorer.maps_are_cheap();
    let out = scorer.score(&x, cheap_maps);
    let floor = info.band_floor(&routing);
    let decisions: Vec<Decision> = (0..items.len())
        .map(|i| routing.decide(out.glaucoma[i], out.gradable[i], info.threshold, floor))
        .collect();
    let routed: Vec<i64> = (0..n).filter(|&i| decisions[i as usize].review.is_some()).collect();
    let mut maps: Vec<Option<Vec<f32>>> = vec![None; items.len()];
    let rows = |m: &Tensor, idx: &[i64]| {
        for (k, &i) in idx.iter().enumerate() {
            maps[i as usize] = Vec::<f32>::try_from(m.get(k as i64).flatten(0, -1)).ok();
        }
    };
    let mut rows = rows;
    if !routed.is_empty() {
        match &out.maps {
            Some(m) => rows(&m.index_select(0, &Tensor::from_slice(&routed)), &routed),
            None => {
                let sub = scorer.score(&x.index_select(0, &Tensor::from_slice(&routed)), true);
                if let Some(m) = sub.maps {
                    rows(&m, &routed);
                }
            }
        }
    }
    (0..items.len())
        .map(|i| Scored {
            glaucoma: out.glaucoma[i],
            gradable: out.gradable[i],
            decision: decisions[i],
            map: maps[i].take(),
            model: info.clone(),
        })
        .collect()
}
