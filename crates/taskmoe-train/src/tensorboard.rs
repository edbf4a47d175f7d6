//! TensorBoard event files: what a run writes for `tensorboard --logdir runs` to read, through
//! the `tfrecord` crate's event writer and protobuf types (no hand-written protobuf, no
//! `protoc` at build time).
//!
//! A [`TensorBoardLog`] owns a writer thread: the training loop hands it a step's [`StepLog`]
//! (a clone and a channel send) and the thread turns it into one event of scalars, so encoding,
//! checksums and file writes stay off the step. Each process start opens a new file
//! (`events.out.tfevents.<µs>.<host>`) in the run folder and begins it with the file version
//! and a session-start event at the first step it will log: TensorBoard then drops the events
//! an earlier process logged from that step on (those a resume trains again).
//!
//! Tags (docs/tensorboard.md):
//!
//! ```text
//! train/loss  train/task_loss  train/loss/<task>  train/aux/<name>  train/lr
//! train/grad_norm  train/tokens_per_s  train/skipped
//! routing/moe<b>/gate_entropy  routing/moe<b>/top1_prob  routing/moe<b>/load_entropy
//! routing/moe<b>/dropped  routing/moe<b>/load/expert<e>
//! <split>/<path>              every number of an evaluation's record ("eval" without a split)
//! config                      text: the resolved configuration
//! ```

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{channel, Sender};
use std::thread::JoinHandle;

use serde_json::Value as Json;
use tfrecord::protobuf::event::What;
use tfrecord::protobuf::session_log::SessionStatus;
use tfrecord::protobuf::summary::value::Value as SummaryValue;
use tfrecord::protobuf::summary::Value;
use tfrecord::protobuf::summary_metadata::PluginData;
use tfrecord::protobuf::{DataType, SessionLog, SummaryMetadata, TensorProto, TensorShapeProto};
use tfrecord::{Event, EventWriter, EventWriterConfig, Summary};

use crate::error::{Result, TrainError};
use crate::run_log::{unix_time, StepLog};

/// The start of every event file's name (TensorBoard reads the files whose name holds
/// `tfevents`).
pub const EVENTS_FILE_PREFIX: &str = "events";

/// What the writer thread is asked to do.
enum Message {
    Step(Box<StepLog>),
    Evaluation(u64, f64, Json),
    Text(String, u64, String),
    Flush(Sender<std::result::Result<(), String>>),
}

/// A run's TensorBoard event file, written by a thread of its own.
pub struct TensorBoardLog {
    path: PathBuf,
    sender: Option<Sender<Message>>,
    worker: Option<JoinHandle<std::result::Result<(), String>>>,
}

impl TensorBoardLog {
    /// Opens a new event file in `dir` (created if missing) for a process whose first step
    /// will be `start_step + 1`: writes the file version and a session start at that step.
    pub fn create(dir: &Path, start_step: u64) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|source| TrainError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        let micros = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_micros());
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map_or_else(|_| "localhost".to_string(), |h| h.trim().to_string());
        let path = dir.join(format!("{EVENTS_FILE_PREFIX}.out.tfevents.{micros}.{host}"));
        let config = EventWriterConfig { auto_flush: false };
        let writer = EventWriter::create(&path, config).map_err(|e| tb_err(&path, &e))?;
        let mut thread = Worker {
            writer,
            error: None,
        };
        let now = unix_time();
        thread.write(event(now, 0, What::FileVersion("brain.Event:2".into())));
        let start = SessionLog {
            status: SessionStatus::Start as i32,
            ..Default::default()
        };
        thread.write(event(now, start_step + 1, What::SessionLog(start)));
        let (sender, receiver) = channel();
        let worker = std::thread::Builder::new()
            .name("tensorboard".into())
            .spawn(move || {
                for message in receiver {
                    thread.handle(message);
                }
                thread.writer.flush().map_err(|e| e.to_string())?;
                thread.error.map_or(Ok(()), Err)
            })
            .map_err(|source| TrainError::Io {
                path: path.clone(),
                source,
            })?;
        Ok(TensorBoardLog {
            path,
            sender: Some(sender),
            worker: Some(worker),
        })
    }

    /// The event file this log writes.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Queues a training step's scalars (one event at `log.step`).
    pub fn step(&self, log: &StepLog) {
        self.send(Message::Step(Box::new(log.clone())));
    }

    /// Queues every number of an evaluation's record at `step`, under `<split>/...` (the
    /// record's `split` field) or `eval/...`.
    pub fn evaluation(&self, step: u64, record: &Json) {
        self.send(Message::Evaluation(step, unix_time(), record.clone()));
    }

    /// Queues a text summary (markdown) under `tag` at `step`.
    pub fn text(&self, tag: &str, step: u64, markdown: &str) {
        self.send(Message::Text(tag.into(), step, markdown.into()));
    }

    /// Writes everything queued so far to the file; reports the first write error.
    pub fn flush(&self) -> Result<()> {
        let (ack, answer) = channel();
        self.send(Message::Flush(ack));
        let reply = answer
            .recv()
            .unwrap_or_else(|_| Err("the writer thread ended".into()));
        reply.map_err(|message| self.error(message))
    }

    /// Writes everything queued, closes the file and reports the first write error.
    pub fn close(mut self) -> Result<()> {
        self.finish()
    }

    fn finish(&mut self) -> Result<()> {
        drop(self.sender.take());
        match self.worker.take().map(JoinHandle::join) {
            None | Some(Ok(Ok(()))) => Ok(()),
            Some(Ok(Err(message))) => Err(self.error(message)),
            Some(Err(_)) => Err(self.error("the writer thread panicked".into())),
        }
    }

    fn send(&self, message: Message) {
        if let Some(sender) = &self.sender {
            // A thread that ended keeps its error for `flush` and `close` to report.
            let _ = sender.send(message);
        }
    }

    fn error(&self, message: String) -> TrainError {
        TrainError::Io {
            path: self.path.clone(),
            source: std::io::Error::other(message),
        }
    }
}

impl Drop for TensorBoardLog {
    fn drop(&mut self) {
        // Whatever was queued reaches the file; an error has no one left to hear it.
        let _ = self.finish();
    }
}

/// The writer thread's side: the file and its first error (after which it writes nothing).
struct Worker {
    writer: EventWriter<BufWriter<File>>,
    error: Option<String>,
}

impl Worker {
    fn handle(&mut self, message: Message) {
        match message {
            Message::Step(log) => self.write(event(log.time, log.step, step_summary(&log))),
            Message::Evaluation(step, time, record) => {
                let split = record.get("split").and_then(Json::as_str).unwrap_or("eval");
                let mut values = Vec::new();
                flatten(split, &record, &mut values);
                let summary = Summary {
                    value: values.into_iter().map(|(t, v)| scalar(t, v)).collect(),
                };
                self.write(event(time, step, What::Summary(summary)));
            }
            Message::Text(tag, step, text) => {
                let summary = Summary {
                    value: vec![text_value(tag, text)],
                };
                self.write(event(unix_time(), step, What::Summary(summary)));
            }
            Message::Flush(ack) => {
                let flushed = self.writer.flush().map_err(|e| e.to_string());
                let _ = ack.send(match &self.error {
                    Some(error) => Err(error.clone()),
                    None => flushed,
                });
            }
        }
    }

    fn write(&mut self, event: Event) {
        if self.error.is_none() {
            if let Err(e) = self.writer.write_event(event) {
                self.error = Some(e.to_string());
            }
        }
    }
}

/// The scalars of one step.
fn step_summary(log: &StepLog) -> What {
    let mut values = vec![
        scalar("train/loss".into(), log.loss),
        scalar("train/task_loss".into(), log.task_loss),
        scalar("train/lr".into(), log.lr),
        scalar("train/grad_norm".into(), log.grad_norm),
        scalar("train/tokens_per_s".into(), log.tokens_per_s),
        scalar("train/skipped".into(), f64::from(u8::from(log.skipped))),
    ];
    for (task, loss) in &log.task_losses {
        values.push(scalar(format!("train/loss/{task}"), *loss));
    }
    for (name, value) in &log.aux {
        values.push(scalar(format!("train/aux/{name}"), *value));
    }
    let block = |measure: &[f64], name: &str, values: &mut Vec<Value>| {
        for (b, v) in measure.iter().enumerate() {
            values.push(scalar(format!("routing/moe{b}/{name}"), *v));
        }
    };
    block(&log.gate_entropy, "gate_entropy", &mut values);
    block(&log.top1_prob, "top1_prob", &mut values);
    block(&log.dropped, "dropped", &mut values);
    for (b, load) in log.expert_load.iter().enumerate() {
        let balanced = (load.len() as f64).ln();
        if balanced > 0.0 {
            let entropy = taskmoe_kernels::stats::entropy(load) / balanced;
            values.push(scalar(format!("routing/moe{b}/load_entropy"), entropy));
        }
        for (e, share) in load.iter().enumerate() {
            values.push(scalar(format!("routing/moe{b}/load/expert{e}"), *share));
        }
    }
    What::Summary(Summary { value: values })
}

/// Every number under `value`, tagged by its path below `prefix`: object keys, and for an
/// array element its `task` (or `name`) field, else its index. Strings, booleans and nulls
/// are left out, and so are the record's `step` and `time`.
fn flatten(prefix: &str, value: &Json, out: &mut Vec<(String, f64)>) {
    match value {
        Json::Number(n) => out.extend(n.as_f64().map(|v| (prefix.to_string(), v))),
        Json::Object(map) => {
            for (key, v) in map {
                if !matches!(key.as_str(), "step" | "time") {
                    flatten(&format!("{prefix}/{key}"), v, out);
                }
            }
        }
        Json::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                let name = ["task", "name"]
                    .iter()
                    .find_map(|k| item.get(k).and_then(Json::as_str));
                let segment = name.map_or_else(|| i.to_string(), str::to_string);
                let inner = match item {
                    Json::Object(map) => {
                        let rest = map
                            .iter()
                            .filter(|(k, _)| !matches!(k.as_str(), "task" | "name"));
                        Json::Object(rest.map(|(k, v)| (k.clone(), v.clone())).collect())
                    }
                    other => other.clone(),
                };
                flatten(&format!("{prefix}/{segment}"), &inner, out);
            }
        }
        Json::String(_) | Json::Bool(_) | Json::Null => {}
    }
}

fn event(wall_time: f64, step: u64, what: What) -> Event {
    Event {
        wall_time,
        step: step as i64,
        what: Some(what),
        source_metadata: None,
    }
}

fn scalar(tag: String, value: f64) -> Value {
    Value {
        tag,
        value: Some(SummaryValue::SimpleValue(value as f32)),
        ..Default::default()
    }
}

/// A text summary as TensorBoard's text plugin reads it: a string tensor of rank 0.
fn text_value(tag: String, markdown: String) -> Value {
    let tensor = TensorProto {
        dtype: DataType::DtString as i32,
        tensor_shape: Some(TensorShapeProto::default()),
        string_val: vec![markdown.into_bytes()],
        ..Default::default()
    };
    let metadata = SummaryMetadata {
        plugin_data: Some(PluginData {
            plugin_name: "text".into(),
            content: Vec::new(),
        }),
        ..Default::default()
    };
    Value {
        tag,
        metadata: Some(metadata),
        value: Some(SummaryValue::Tensor(tensor)),
        ..Default::default()
    }
}

/// The event files in `dir`, sorted by name (the order TensorBoard reads them in).
pub fn event_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(TrainError::Io {
                path: dir.to_path_buf(),
                source,
            })
        }
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(EVENTS_FILE_PREFIX) && n.contains(".tfevents."))
        })
        .collect();
    files.sort();
    Ok(files)
}

/// The scalars of the event files in `dir` as TensorBoard shows them: by tag, `(step, value)`
/// in file order, with a session start at step `s` dropping what was logged at `s` and later
/// (a resume's retrained steps replace them), as TensorBoard's orphan purge does.
pub fn read_scalars(dir: &Path) -> Result<std::collections::BTreeMap<String, Vec<(u64, f32)>>> {
    let mut scalars: std::collections::BTreeMap<String, Vec<(u64, f32)>> = Default::default();
    for path in event_files(dir)? {
        let events =
            tfrecord::EventIter::open(&path, Default::default()).map_err(|e| tb_err(&path, &e))?;
        for event in events {
            let event = event.map_err(|e| tb_err(&path, &e))?;
            let step = event.step.max(0) as u64;
            match event.what {
                Some(What::SessionLog(log)) if log.status == SessionStatus::Start as i32 => {
                    for points in scalars.values_mut() {
                        points.retain(|&(s, _)| s < step);
                    }
                }
                Some(What::Summary(summary)) => {
                    for value in summary.value {
                        if let Some(SummaryValue::SimpleValue(v)) = value.value {
                            scalars.entry(value.tag).or_default().push((step, v));
                        }
                    }
                }
                _ => {}
            }
        }
    }
    Ok(scalars)
}

fn tb_err(path: &Path, e: &tfrecord::Error) -> TrainError {
    TrainError::Io {
        path: path.to_path_buf(),
        source: std::io::Error::other(e.to_string()),
    }
}
