//! Docker's STATUS and COMMAND columns and State.Status for a row.

use super::{config_of, is_running};
use crate::container::ContainerConfig;
use crate::store::containers::{ContainerRow, Status};
use crate::{util, Instance};

/// Docker's STATUS column from the row alone.
pub(crate) fn status_text(row: &ContainerRow, now: i64) -> String {
    let ago = |t: i64| util::human_duration((now - t) / 1_000_000_000);
    match row.status {
        Status::Running => format!("Up {}", ago(row.started_at)),
        Status::Exited => format!("Exited ({}) {} ago", row.exit_code, ago(row.finished_at)),
        _ => "Created".into(),
    }
}

/// Docker's State.Status for a row: the stored word with "paused" (the
/// flag `pause` records) and what only the state files know,
/// "restarting" (a restart waiting out its back-off).
pub fn status(inst: &Instance, row: &ContainerRow) -> Status {
    status_with(inst, row, &config_of(row), is_running(row))
}

/// [`status`] for a row whose config is already parsed and whose init's
/// liveness is known (`ps`: see `list_running`): the restart state is read
/// only with a restart policy, the only way a container gets one.
pub fn status_with(
    inst: &Instance,
    row: &ContainerRow,
    cfg: &ContainerConfig,
    running: bool,
) -> Status {
    status_of(inst, row, !cfg.restart.is_none(), running)
}

/// [`status_with`] knowing only whether the container has a restart policy
/// (`ps` reads no more of the config).
pub fn status_of(
    inst: &Instance,
    row: &ContainerRow,
    restart_policy: bool,
    running: bool,
) -> Status {
    match row.status {
        Status::Running if running && row.paused => Status::Paused,
        Status::Running if running => Status::Running,
        Status::Created => Status::Created,
        _ if restart_policy
            && crate::container::restart::is_restarting(inst, &row.id).is_some() =>
        {
            Status::Restarting
        }
        _ => Status::Exited,
    }
}

/// Docker's STATUS column for a row whose [`status`] is known: a restart
/// waiting out its back-off ("Restarting (1) 2 seconds ago"), a pause, and
/// the health of a running container ("Up 3 seconds (healthy)").
pub fn status_line(inst: &Instance, row: &ContainerRow, status: Status, now: i64) -> String {
    let health = crate::container::health::read(inst, &row.id, &config_of(row));
    status_line_with(row, status, now, health.as_ref().map(|h| h.status.as_str()))
}

/// [`status_line`] with the health status already read (None: the
/// container has no health check).
pub fn status_line_with(
    row: &ContainerRow,
    status: Status,
    now: i64,
    health: Option<&str>,
) -> String {
    if row.status == Status::Exited && status == Status::Restarting {
        let ago = util::human_duration((now - row.finished_at) / 1_000_000_000);
        return format!("Restarting ({}) {ago} ago", row.exit_code);
    }
    let mut text = status_text(row, now);
    match status {
        Status::Paused => text.push_str(" (Paused)"),
        Status::Running => {
            if let Some(h) = health {
                text.push_str(&crate::container::health::status_suffix(h));
            }
        }
        _ => {}
    }
    text
}

/// Docker's COMMAND column: the argv quoted and cut at 20 characters.
pub fn command_text(args: &[String]) -> String {
    let full = args.join(" ");
    let cut: String = if full.chars().count() > 20 {
        format!("{}…", full.chars().take(19).collect::<String>())
    } else {
        full
    };
    format!("\"{cut}\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_column_is_quoted_and_cut() {
        assert_eq!(
            command_text(&["sleep".into(), "100".into()]),
            "\"sleep 100\""
        );
        let long = command_text(&[
            "httpd".into(),
            "-f".into(),
            "-p".into(),
            "80".into(),
            "-h".into(),
            "/www".into(),
        ]);
        assert_eq!(long.chars().count(), 22);
        assert!(long.ends_with("…\""));
    }
}
