//! What PostgreSQL did for the measured commands: the WAL the server wrote and, where
//! the server loads `pg_stat_statements`, its execution time by statement on the run's
//! database. The CPU split says how much of the machine the database took; this says
//! on what.

use std::collections::HashMap;

use serde::Serialize;
use sqlx::PgPool;

/// Marks the benchmark's own statements, so the breakdown tells them from pinflow's.
pub(super) const OURS: &str = "/* pinflow bench */";

/// Statements the text report lists, the costliest first (the JSON has them all).
const LISTED: usize = 8;

/// Characters of a statement's text kept, its whitespace squeezed.
const TEXT_CHARS: usize = 100;

/// The server's counters at one moment.
pub(super) struct Counters {
    /// The WAL position, as PostgreSQL writes it.
    wal_lsn: String,
    /// Every statement of the run's database so far, by user and query id; `Err`
    /// says why there are none.
    statements: Result<HashMap<(i64, i64), Counted>, String>,
}

/// One statement's counters, as `pg_stat_statements` keeps them.
#[derive(Debug)]
pub(super) struct Counted {
    /// Its normalized text.
    pub text: String,
    /// Times run.
    pub calls: i64,
    /// Milliseconds spent running it.
    pub exec_ms: f64,
    /// Rows it returned or changed.
    pub rows: i64,
    /// WAL bytes it wrote.
    pub wal_bytes: f64,
}

/// What PostgreSQL did in the measured phase, per command.
#[derive(Debug, Clone, Serialize)]
pub struct DatabaseWork {
    /// WAL bytes the whole server wrote in the phase, per command.
    pub wal_bytes_per_command: f64,
    /// The run's database's statements; `null` when `pg_stat_statements` is not there
    /// (`statements_missing` says why).
    pub statements: Option<Statements>,
    /// Why `statements` is `null`.
    pub statements_missing: Option<String>,
}

/// Execution time by statement, from `pg_stat_statements` (top-level statements; a
/// trigger's or a foreign key's work counts in the statement that fired it).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Statements {
    /// Every statement's execution time, milliseconds per 1,000 commands; what
    /// PostgreSQL's CPU holds beyond it is parsing, commits, the protocol and its
    /// background processes.
    pub exec_ms_per_1000: f64,
    /// Transactions committed (`COMMIT` statements) per 1,000 commands.
    pub commits_per_1000: f64,
    /// The benchmark's own statements (its reads of the inbox, these counters), the
    /// same way; included above.
    pub benchmark_ms_per_1000: f64,
    /// Every statement that ran, the costliest first.
    pub ran: Vec<Statement>,
}

/// One statement's share of the phase.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Statement {
    /// Its normalized text, shortened.
    pub text: String,
    /// Times run per 1,000 commands.
    pub calls_per_1000: f64,
    /// Milliseconds spent running it per 1,000 commands.
    pub exec_ms_per_1000: f64,
    /// Its share of every statement's execution time.
    pub share: f64,
    /// Rows per call.
    pub rows_per_call: f64,
    /// WAL bytes it wrote per command.
    pub wal_bytes_per_command: f64,
    /// Whether it is the benchmark's own.
    pub benchmark: bool,
}

impl Counters {
    /// The counters now, having added `pg_stat_statements` to the pool's database
    /// where the server loads the library (the run's database goes with the run).
    pub(super) async fn take(pool: &PgPool) -> Result<Counters, sqlx::Error> {
        let statements = match add_statements(pool).await {
            Ok(()) => statements(pool).await,
            Err(why) => Err(why),
        };
        Counters::with(pool, statements).await
    }

    /// The counters now, read the way `self` was: the statements only where they
    /// could be then, without adding the extension again.
    pub(super) async fn again(&self, pool: &PgPool) -> Result<Counters, sqlx::Error> {
        let statements = match &self.statements {
            Ok(_) => statements(pool).await,
            Err(why) => Err(why.clone()),
        };
        Counters::with(pool, statements).await
    }

    /// These statements' counters, with the WAL position now.
    async fn with(
        pool: &PgPool,
        statements: Result<HashMap<(i64, i64), Counted>, String>,
    ) -> Result<Counters, sqlx::Error> {
        let wal_lsn = sqlx::query_scalar("select pg_current_wal_lsn()::text")
            .fetch_one(pool)
            .await?;
        Ok(Counters {
            wal_lsn,
            statements,
        })
    }

    /// What `commands` commands cost the server from `self` until now.
    pub(super) async fn since(
        &self,
        pool: &PgPool,
        commands: u32,
    ) -> Result<DatabaseWork, sqlx::Error> {
        let now = self.again(pool).await?;
        let wal: f64 = sqlx::query_scalar("select ($1::pg_lsn - $2::pg_lsn)::float8")
            .bind(&now.wal_lsn)
            .bind(&self.wal_lsn)
            .fetch_one(pool)
            .await?;
        let per_command = 1.0 / f64::from(commands.max(1));
        let (statements, statements_missing) = match (&self.statements, &now.statements) {
            (Ok(before), Ok(after)) => (Some(Statements::between(before, after, commands)), None),
            (Err(why), _) | (Ok(_), Err(why)) => (None, Some(why.clone())),
        };
        Ok(DatabaseWork {
            wal_bytes_per_command: wal.max(0.0) * per_command,
            statements,
            statements_missing,
        })
    }
}

/// Why the statements cannot be read.
fn missing(e: sqlx::Error) -> String {
    format!("pg_stat_statements: {e}")
}

/// Adds `pg_stat_statements` to the pool's database, or says why it cannot.
async fn add_statements(pool: &PgPool) -> Result<(), String> {
    let loaded: bool = sqlx::query_scalar(
        "select 'pg_stat_statements' = any(string_to_array(
             replace(current_setting('shared_preload_libraries'), ' ', ''), ','))",
    )
    .fetch_one(pool)
    .await
    .map_err(missing)?;
    if !loaded {
        return Err("pg_stat_statements is not in the server's shared_preload_libraries".into());
    }
    sqlx::query("create extension if not exists pg_stat_statements")
        .execute(pool)
        .await
        .map_err(missing)?;
    Ok(())
}

/// Every statement of the pool's database, or why there are none.
async fn statements(pool: &PgPool) -> Result<HashMap<(i64, i64), Counted>, String> {
    // Top-level statements only: a nested one's time is already its caller's.
    let rows: Vec<(i64, i64, String, i64, f64, i64, f64)> = sqlx::query_as(&format!(
        "{OURS} select userid::int8, queryid, coalesce(query, ''), calls, total_exec_time,
             rows, wal_bytes::float8
         from pg_stat_statements
         where dbid = (select oid from pg_database where datname = current_database())
             and queryid is not null and toplevel"
    ))
    .fetch_all(pool)
    .await
    .map_err(missing)?;
    Ok(rows
        .into_iter()
        .map(|(user, id, text, calls, exec_ms, rows, wal_bytes)| {
            let counted = Counted {
                text,
                calls,
                exec_ms,
                rows,
                wal_bytes,
            };
            ((user, id), counted)
        })
        .collect())
}

impl Statements {
    /// What ran between two readings, for `commands` commands.
    pub(super) fn between(
        before: &HashMap<(i64, i64), Counted>,
        after: &HashMap<(i64, i64), Counted>,
        commands: u32,
    ) -> Statements {
        let per_command = 1.0 / f64::from(commands.max(1));
        let per_1000 = 1000.0 * per_command;
        let mut ran: Vec<Counted> = after
            .iter()
            .filter_map(|(id, now)| {
                let then = before.get(id);
                let calls = now.calls - then.map_or(0, |t| t.calls);
                (calls > 0).then(|| Counted {
                    text: now.text.clone(),
                    calls,
                    exec_ms: now.exec_ms - then.map_or(0.0, |t| t.exec_ms),
                    rows: now.rows - then.map_or(0, |t| t.rows),
                    wal_bytes: now.wal_bytes - then.map_or(0.0, |t| t.wal_bytes),
                })
            })
            .collect();
        ran.sort_by(|a, b| b.exec_ms.total_cmp(&a.exec_ms));
        let exec_ms: f64 = ran.iter().map(|s| s.exec_ms).sum();
        let ours = |s: &Counted| s.text.trim_start().starts_with(OURS);
        let commits = ran
            .iter()
            .filter(|s| s.text.trim().eq_ignore_ascii_case("commit"))
            .map(|s| s.calls)
            .sum::<i64>();
        let benchmark_ms: f64 = ran.iter().filter(|s| ours(s)).map(|s| s.exec_ms).sum();
        let listed = ran
            .iter()
            .map(|s| Statement {
                text: shortened(&s.text),
                calls_per_1000: s.calls as f64 * per_1000,
                exec_ms_per_1000: s.exec_ms * per_1000,
                share: if exec_ms > 0.0 {
                    s.exec_ms / exec_ms
                } else {
                    0.0
                },
                rows_per_call: s.rows as f64 / s.calls as f64,
                wal_bytes_per_command: s.wal_bytes * per_command,
                benchmark: ours(s),
            })
            .collect();
        Statements {
            exec_ms_per_1000: exec_ms * per_1000,
            commits_per_1000: commits as f64 * per_1000,
            benchmark_ms_per_1000: benchmark_ms * per_1000,
            ran: listed,
        }
    }
}

/// `text` on one line, its whitespace squeezed, at most `TEXT_CHARS` characters.
fn shortened(text: &str) -> String {
    let words: Vec<&str> = text.split_whitespace().collect();
    let line = words.join(" ");
    match line.char_indices().nth(TEXT_CHARS) {
        Some((cut, _)) => format!("{}…", &line[..cut]),
        None => line,
    }
}

impl DatabaseWork {
    /// The figures as a report prints them: labels `width` wide, each figure per `per`
    /// ("command", "credential").
    pub(super) fn write(
        &self,
        f: &mut std::fmt::Formatter<'_>,
        width: usize,
        per: &str,
    ) -> std::fmt::Result {
        let wal = format!("db WAL per {per}:");
        write!(f, "{wal:<width$}")?;
        writeln!(
            f,
            "{:.0} bytes (the whole server's)",
            self.wal_bytes_per_command
        )?;
        write!(f, "{:<width$}", "db statements / 1,000:")?;
        let Some(statements) = &self.statements else {
            let why = self.statements_missing.as_deref().unwrap_or("unknown");
            return write!(f, "not measured: {why}");
        };
        write!(
            f,
            "{:.1} ms running statements, {:.1} commits (the benchmark's own {:.1} ms)",
            statements.exec_ms_per_1000,
            statements.commits_per_1000,
            statements.benchmark_ms_per_1000
        )?;
        for s in statements.ran.iter().take(LISTED) {
            let whose = if s.benchmark { " [benchmark]" } else { "" };
            write!(
                f,
                "\n  {:>3.0}% {:>7.1} ms {:>7.1} calls {:>6.0} B WAL/{per}  {}{whose}",
                s.share * 100.0,
                s.exec_ms_per_1000,
                s.calls_per_1000,
                s.wal_bytes_per_command,
                s.text
            )?;
        }
        let more = statements.ran.len().saturating_sub(LISTED);
        if more > 0 {
            write!(f, "\n  and {more} more (in the JSON)")?;
        }
        Ok(())
    }
}

impl std::fmt::Display for DatabaseWork {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.write(f, 36, "command")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counted(text: &str, calls: i64, exec_ms: f64, rows: i64, wal_bytes: f64) -> Counted {
        Counted {
            text: text.into(),
            calls,
            exec_ms,
            rows,
            wal_bytes,
        }
    }

    #[test]
    fn the_phase_is_the_difference_of_two_readings_costliest_first() {
        let inbox = "insert into inbox\n   values ($1)";
        let before = HashMap::from([
            ((10, 1), counted(inbox, 10, 5.0, 10, 1000.0)),
            ((10, 2), counted("COMMIT", 10, 0.5, 0, 0.0)),
            ((10, 3), counted("select 1", 4, 1.0, 4, 0.0)),
        ]);
        let after = HashMap::from([
            ((10, 1), counted(inbox, 30, 25.0, 70, 9000.0)),
            ((10, 2), counted("COMMIT", 30, 1.5, 0, 0.0)),
            ((10, 3), counted("select 1", 4, 1.0, 4, 0.0)),
            (
                (10, 4),
                counted(&format!("{OURS} select x"), 2, 3.5, 2, 0.0),
            ),
            // The same statement run by another user is an entry of its own.
            ((11, 2), counted("COMMIT", 5, 0.0, 0, 0.0)),
        ]);
        let phase = Statements::between(&before, &after, 500);
        // Per 1,000 commands: twice the phase's figures.
        assert_eq!(phase.exec_ms_per_1000, 2.0 * (20.0 + 1.0 + 3.5));
        assert_eq!(phase.commits_per_1000, 50.0);
        assert_eq!(phase.benchmark_ms_per_1000, 7.0);
        let texts: Vec<&str> = phase.ran.iter().map(|s| s.text.as_str()).collect();
        let ours = format!("{OURS} select x");
        let listed = ["insert into inbox values ($1)", &ours, "COMMIT", "COMMIT"];
        assert_eq!(texts, listed);
        let inbox = &phase.ran[0];
        assert_eq!(inbox.calls_per_1000, 40.0);
        assert_eq!(inbox.rows_per_call, 3.0);
        assert_eq!(inbox.wal_bytes_per_command, 16.0);
        assert_eq!(inbox.share, 20.0 / 24.5);
        assert!(!inbox.benchmark && phase.ran[1].benchmark);
    }

    #[test]
    fn nothing_ran_is_nothing_listed() {
        let same = HashMap::from([((10, 1), counted("COMMIT", 3, 1.0, 0, 0.0))]);
        let phase = Statements::between(&same, &same, 0);
        assert_eq!(phase.exec_ms_per_1000, 0.0);
        assert!(phase.ran.is_empty());
    }

    #[test]
    fn long_texts_are_cut_on_a_character() {
        let long = "é".repeat(TEXT_CHARS + 5);
        let cut = shortened(&long);
        assert_eq!(cut.chars().count(), TEXT_CHARS + 1);
        assert!(cut.ends_with('…'));
        assert_eq!(shortened("  a \n\t b "), "a b");
    }
}
