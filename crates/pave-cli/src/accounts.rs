//! `pave users ...` and `pave tokens ...`: accounts of the REST API and
//! the web UI, and the first admin that `pave standalone` creates.

use crate::home::Home;
use anyhow::{Context, Result, bail};
use chrono::{DateTime, Utc};
use clap::Subcommand;
use pave_rest::auth::{issue_api_token, secret};
use pave_store::{ApiStore, NewUser, Role, StoreError};
use std::io::BufRead;
use std::process::ExitCode;

/// The shortest password `pave users` accepts.
const MIN_PASSWORD_LEN: usize = 8;

#[derive(Subcommand, Debug)]
pub enum UsersCommand {
    /// Create a user. Without --password-stdin a random password is made
    /// and printed once.
    Create {
        #[arg(long)]
        username: String,
        /// viewer (reads), user (also triggers, clears, marks), op (also
        /// pools) or admin (also users).
        #[arg(long, value_parser = parse_role)]
        role: Role,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Set a user's password (from standard input, or a new random one).
    SetPassword {
        #[arg(long)]
        username: String,
        #[arg(long)]
        password_stdin: bool,
    },
    /// List the users.
    List,
}

#[derive(Subcommand, Debug)]
pub enum TokensCommand {
    /// Create an API token for a user; it is printed once, on stdout.
    Create {
        #[arg(long)]
        username: String,
        /// A name to recognise the token by.
        #[arg(long, default_value = "cli")]
        name: String,
        /// How long it is valid: e.g. 30d, 12h, 90m, 3600s, or `never`.
        #[arg(long, default_value = "90d")]
        expires_in: String,
    },
}

fn parse_role(text: &str) -> Result<Role, String> {
    text.parse()
}

/// `30d`, `12h`, `90m`, `3600s` or `never` (None).
fn parse_expiry(text: &str) -> Result<Option<chrono::Duration>> {
    if text == "never" {
        return Ok(None);
    }
    let bad = || {
        anyhow::anyhow!(
            "invalid --expires-in `{text}`: use a number with s, m, h or d (e.g. 30d), or `never`"
        )
    };
    let (number, unit) = text.split_at(text.len().saturating_sub(1));
    let n: i64 = number.parse().map_err(|_| bad())?;
    if n <= 0 {
        return Err(bad());
    }
    let d = match unit {
        "s" => chrono::Duration::try_seconds(n),
        "m" => chrono::Duration::try_minutes(n),
        "h" => chrono::Duration::try_hours(n),
        "d" => chrono::Duration::try_days(n),
        _ => None,
    };
    d.map(Some).ok_or_else(bad)
}

/// The first line of standard input, without its line ending.
fn password_from_stdin() -> Result<String> {
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("cannot read the password from standard input")?;
    let password = line.trim_end_matches(['\n', '\r']).to_owned();
    if password.chars().count() < MIN_PASSWORD_LEN {
        bail!("the password needs at least {MIN_PASSWORD_LEN} characters");
    }
    Ok(password)
}

/// The password to set, and whether it was made here (then print it).
fn password(from_stdin: bool) -> Result<(String, bool)> {
    if from_stdin {
        Ok((password_from_stdin()?, false))
    } else {
        Ok((secret::new_password()?, true))
    }
}

pub async fn users(home: Home, cmd: UsersCommand) -> Result<ExitCode> {
    let store = home.open_api_store().await?;
    match cmd {
        UsersCommand::Create {
            username,
            role,
            password_stdin,
        } => {
            if username.is_empty()
                || username.len() > 64
                || !username
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'))
            {
                bail!(
                    "invalid username `{username}`: use 1-64 letters, digits, `.`, `_`, `-` or `@`"
                );
            }
            let (password, made) = password(password_stdin)?;
            let hash = secret::hash_password(&password)?;
            store
                .create_user(NewUser {
                    username: username.clone(),
                    role,
                    password_hash: Some(hash),
                    created_at: Utc::now(),
                })
                .await
                .map_err(|e| match e {
                    StoreError::Conflict { .. } => {
                        anyhow::anyhow!("user `{username}` already exists; pick another --username")
                    }
                    other => other.into(),
                })?;
            println!("created user {username} with role {role}");
            if made {
                println!("password: {password}");
                println!("(shown only this once)");
            }
        }
        UsersCommand::SetPassword {
            username,
            password_stdin,
        } => {
            let (password, made) = password(password_stdin)?;
            store
                .set_password(&username, &secret::hash_password(&password)?)
                .await?;
            println!("password of {username} changed");
            if made {
                println!("password: {password}");
                println!("(shown only this once)");
            }
        }
        UsersCommand::List => {
            for u in store.list_users().await? {
                println!("{}\t{}", u.username, u.role);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn tokens(home: Home, cmd: TokensCommand) -> Result<ExitCode> {
    let store = home.open_api_store().await?;
    match cmd {
        TokensCommand::Create {
            username,
            name,
            expires_in,
        } => {
            let now = Utc::now();
            let expires_at: Option<DateTime<Utc>> = parse_expiry(&expires_in)?.map(|d| now + d);
            let user = store.get_user(&username).await.map_err(|e| match e {
                StoreError::NotFound { .. } => anyhow::anyhow!(
                    "no user `{username}`; create one with `pave users create --username {username} --role user`"
                ),
                other => other.into(),
            })?;
            let (token, record) = issue_api_token(store.as_ref(), &user, &name, now, expires_at)
                .await
                .map_err(|p| anyhow::anyhow!("{}", p.detail))?;
            println!("{token}");
            eprintln!(
                "API token `{}` for {} ({}), {}; it is shown only this once. Send it as `Authorization: Bearer <token>`.",
                record.name,
                user.username,
                user.role,
                match record.expires_at {
                    Some(t) => format!("valid until {}", t.to_rfc3339()),
                    None => "never expires".to_owned(),
                }
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// On the first start of a home: creates the user `admin` with a random
/// password and returns it (to print once). `None` if any user exists.
pub async fn first_admin(store: &dyn ApiStore) -> Result<Option<String>> {
    if store.count_users().await? > 0 {
        return Ok(None);
    }
    let password = secret::new_password()?;
    let hash = secret::hash_password(&password)?;
    store
        .create_user(NewUser {
            username: "admin".to_owned(),
            role: Role::Admin,
            password_hash: Some(hash),
            created_at: Utc::now(),
        })
        .await?;
    Ok(Some(password))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_durations() {
        assert_eq!(
            parse_expiry("30d").expect("valid"),
            Some(chrono::Duration::days(30))
        );
        assert_eq!(
            parse_expiry("90m").expect("valid"),
            Some(chrono::Duration::minutes(90))
        );
        assert_eq!(parse_expiry("never").expect("valid"), None);
        for bad in ["", "d", "0d", "-1h", "10w", "ten"] {
            assert!(parse_expiry(bad).is_err(), "{bad}");
        }
    }
}
