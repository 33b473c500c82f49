//! Events between the processes that share one PostgreSQL catalogue: front ends and workers
//! (DESIGN.md section 8). What one process publishes (a study changed, a job was queued, a
//! critical work item appeared) reaches every other through PostgreSQL's LISTEN/NOTIFY, and
//! there feeds the same in-process channels as its own events: the watch streams, the web app's
//! live worklist, and the workers' wake-up.
//!
//! Two threads, each with its own connection: one sends (`pg_notify`, fed by a channel, so that
//! publishing never blocks an async thread), one listens. Each reconnects with a backoff after
//! a failure, logged and counted; `radassist_event_relay_connected` shows whether the listener
//! is connected. A notice missed while it was not is not replayed: workers still look at the
//! queue every few seconds, and a watcher sees the study's state on its next change.

use super::metrics::Metrics;
use crate::config::StoreConfig;
use std::sync::{mpsc, Arc, Weak};
use std::time::Duration;

/// The channel radassist's processes notify on.
const CHANNEL: &str = "radassist_events";
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// What travels between processes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// A study's state changed (its watchers look again).
    Study(String),
    /// A study's job was queued (workers look at the queue).
    Queued(String),
    /// A study's new work item is critical.
    Critical(String),
}

impl Notice {
    /// `"<origin> <kind> <uid>"`: the origin lets a process skip its own notices.
    fn payload(&self, origin: &str) -> String {
        let (kind, uid) = match self {
            Notice::Study(uid) => ("study", uid),
            Notice::Queued(uid) => ("queued", uid),
            Notice::Critical(uid) => ("critical", uid),
        };
        format!("{origin} {kind} {uid}")
    }

    /// The notice in `payload`, unless this process sent it (or it is not one of ours).
    fn parse(payload: &str, origin: &str) -> Option<Notice> {
        let mut words = payload.splitn(3, ' ');
        let (from, kind, uid) = (words.next()?, words.next()?, words.next()?);
        if from == origin || uid.is_empty() || uid.len() > 64 {
            return None;
        }
        let uid = uid.to_string();
        match kind {
            "study" => Some(Notice::Study(uid)),
            "queued" => Some(Notice::Queued(uid)),
            "critical" => Some(Notice::Critical(uid)),
            _ => None,
        }
    }
}

/// What the relay hands each other process's notice to, in this process: the core's state
/// (held weakly: the relay ends when it is gone).
pub trait Deliver: Send + Sync {
    fn deliver(&self, notice: Notice);
}

/// The sending side, held by [`super::state::State`].
pub struct Relay {
    outgoing: mpsc::Sender<Notice>,
}

impl Relay {
    /// Sends `notice` to the other processes (never blocks).
    pub fn publish(&self, notice: Notice) {
        let _ = self.outgoing.send(notice);
    }
}

fn backoff(failures: u32) -> Duration {
    (Duration::from_millis(200) * 2u32.saturating_pow(failures.min(6))).min(MAX_BACKOFF)
}

/// How the relay's threads reach the database (as the store does).
#[derive(Clone)]
struct Database {
    config: postgres::Config,
    connector: crate::store::pg::Connector,
}

fn connect(db: &Database) -> Result<postgres::Client, postgres::Error> {
    db.config.connect(db.connector.clone())
}

/// Starts the two threads. The relay lives as long as `inbox` does.
pub fn start(
    config: &StoreConfig,
    inbox: Weak<dyn Deliver>,
    metrics: Arc<Metrics>,
) -> Result<Relay, String> {
    let pg = Database {
        config: crate::store::pg::connection_config(config)?,
        connector: crate::store::pg::connector(config)?,
    };
    let origin = uuid::Uuid::new_v4().as_simple().to_string();
    let (outgoing, queue) = mpsc::channel::<Notice>();
    {
        let (pg, origin, metrics) = (pg.clone(), origin.clone(), metrics.clone());
        std::thread::Builder::new()
            .name("event-relay-send".into())
            .spawn(move || send_loop(&pg, &origin, &queue, &metrics))
            .map_err(|e| format!("starting the event relay: {e}"))?;
    }
    std::thread::Builder::new()
        .name("event-relay-listen".into())
        .spawn(move || listen_loop(&pg, &origin, &inbox, &metrics))
        .map_err(|e| format!("starting the event relay: {e}"))?;
    Ok(Relay { outgoing })
}

/// Sends each queued notice; ends when the relay (the state) is gone.
fn send_loop(pg: &Database, origin: &str, queue: &mpsc::Receiver<Notice>, metrics: &Metrics) {
    let mut client: Option<postgres::Client> = None;
    let mut failures = 0;
    while let Ok(notice) = queue.recv() {
        let payload = notice.payload(origin);
        loop {
            let sent = match client.as_mut() {
                Some(c) => c.execute("SELECT pg_notify($1, $2)", &[&CHANNEL, &payload]),
                None => connect(pg).and_then(|mut c| {
                    let sent = c.execute("SELECT pg_notify($1, $2)", &[&CHANNEL, &payload]);
                    client = Some(c);
                    sent
                }),
            };
            match sent {
                Ok(_) => {
                    failures = 0;
                    break;
                }
                Err(e) => {
                    client = None;
                    failures += 1;
                    metrics.event_relay_failures.inc();
                    tracing::warn!(
                        "event relay: cannot notify the other processes ({e}); retrying"
                    );
                    std::thread::sleep(backoff(failures));
                }
            }
        }
    }
}

/// Listens, and hands each other process's notice to this one's inbox; reconnects after a
/// failure. Ends when the inbox is gone.
fn listen_loop(pg: &Database, origin: &str, inbox: &Weak<dyn Deliver>, metrics: &Metrics) {
    let mut failures = 0;
    loop {
        if inbox.strong_count() == 0 {
            return;
        }
        let listened = connect(pg).and_then(|mut client| {
            client.batch_execute(&format!("LISTEN {CHANNEL}"))?;
            metrics.event_relay_connected.set(1);
            failures = 0;
            loop {
                // Wakes at least once a second to see whether the process is stopping.
                {
                    let mut notifications = client.notifications();
                    let mut iter = notifications.timeout_iter(Duration::from_secs(1));
                    while let Some(n) =
                        postgres::fallible_iterator::FallibleIterator::next(&mut iter)?
                    {
                        let Some(inbox) = inbox.upgrade() else {
                            return Ok(());
                        };
                        if let Some(notice) = Notice::parse(n.payload(), origin) {
                            inbox.deliver(notice);
                        }
                    }
                }
                if inbox.strong_count() == 0 {
                    return Ok(());
                }
                // An idle connection that died shows itself here.
                client.simple_query("")?;
            }
        });
        metrics.event_relay_connected.set(0);
        match listened {
            Ok(()) => return,
            Err(e) => {
                failures += 1;
                metrics.event_relay_failures.inc();
                tracing::error!("event relay: listening failed ({e}); reconnecting");
                std::thread::sleep(backoff(failures));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Notice;

    #[test]
    fn a_notice_reads_back_in_other_processes_and_not_in_its_own() {
        for notice in [
            Notice::Study("1.2.3".into()),
            Notice::Queued("1.2.4".into()),
            Notice::Critical("1.2.5".into()),
        ] {
            let payload = notice.payload("a");
            assert_eq!(Notice::parse(&payload, "b"), Some(notice.clone()));
            assert_eq!(Notice::parse(&payload, "a"), None);
        }
        assert_eq!(Notice::parse("b elsewhere 1.2.3", "a"), None);
        assert_eq!(Notice::parse("b study", "a"), None);
        assert_eq!(
            Notice::parse(&format!("b study {}", "1".repeat(65)), "a"),
            None
        );
    }
}
