//! Users, API tokens and browser sessions in SQLite (`AuthStore`).

use super::SqliteStore;
use super::conv::{corrupt_row, is_unique_violation, parse, time, time_opt, ts, ts_opt};
use crate::error::{Result, StoreError};
use crate::query::{
    ApiTokenRecord, AuthStore, NewApiToken, NewUser, Role, SessionRecord, TokenId, UserId,
    UserRecord,
};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::FromRow;

#[derive(FromRow)]
struct UserRow {
    id: i64,
    username: String,
    role: String,
    password_hash: Option<String>,
    created_at: i64,
}

impl UserRow {
    fn into_record(self) -> Result<UserRecord> {
        let row = format!("user `{}`", self.username);
        corrupt_row(
            row,
            (|| {
                Ok(UserRecord {
                    id: UserId(self.id),
                    role: parse::<Role>("role", &self.role)?,
                    created_at: time("created_at", self.created_at)?,
                    username: self.username,
                    password_hash: self.password_hash,
                })
            })(),
        )
    }
}

#[derive(FromRow)]
struct TokenRow {
    id: i64,
    user_id: i64,
    name: String,
    created_at: i64,
    expires_at: Option<i64>,
}

impl TokenRow {
    fn into_record(self) -> Result<ApiTokenRecord> {
        let row = format!("api token #{} `{}`", self.id, self.name);
        corrupt_row(
            row,
            (|| {
                Ok(ApiTokenRecord {
                    id: TokenId(self.id),
                    user_id: UserId(self.user_id),
                    created_at: time("created_at", self.created_at)?,
                    expires_at: time_opt("expires_at", self.expires_at)?,
                    name: self.name,
                })
            })(),
        )
    }
}

#[derive(FromRow)]
struct SessionRow {
    session_hash: String,
    user_id: i64,
    csrf_token: String,
    created_at: i64,
    expires_at: i64,
}

impl SessionRow {
    fn into_record(self) -> Result<SessionRecord> {
        corrupt_row(
            "a web session",
            (|| {
                Ok(SessionRecord {
                    user_id: UserId(self.user_id),
                    created_at: time("created_at", self.created_at)?,
                    expires_at: time("expires_at", self.expires_at)?,
                    session_hash: self.session_hash,
                    csrf_token: self.csrf_token,
                })
            })(),
        )
    }
}

fn user_not_found(username: &str) -> StoreError {
    StoreError::not_found(format!("user `{username}`"))
}

#[async_trait]
impl AuthStore for SqliteStore {
    async fn create_user(&self, user: NewUser) -> Result<UserRecord> {
        if user.username.trim().is_empty() {
            return Err(StoreError::invalid("a user needs a non-empty username"));
        }
        let inserted: std::result::Result<i64, sqlx::Error> = sqlx::query_scalar(
            "INSERT INTO app_user (username, role, password_hash, created_at)
             VALUES (?1, ?2, ?3, ?4) RETURNING id",
        )
        .bind(user.username.as_str())
        .bind(user.role.as_str())
        .bind(user.password_hash.as_deref())
        .bind(ts(user.created_at))
        .fetch_one(&self.pool)
        .await;
        match inserted {
            Ok(id) => Ok(UserRecord {
                id: UserId(id),
                username: user.username,
                role: user.role,
                password_hash: user.password_hash,
                created_at: user.created_at,
            }),
            Err(e) if is_unique_violation(&e) => Err(StoreError::conflict(format!(
                "user `{}` already exists",
                user.username
            ))),
            Err(e) => Err(e.into()),
        }
    }

    async fn get_user(&self, username: &str) -> Result<UserRecord> {
        let row: Option<UserRow> = sqlx::query_as(
            "SELECT id, username, role, password_hash, created_at FROM app_user
             WHERE username = ?1",
        )
        .bind(username)
        .fetch_optional(&self.pool)
        .await?;
        row.ok_or_else(|| user_not_found(username))?.into_record()
    }

    async fn get_user_by_id(&self, id: UserId) -> Result<UserRecord> {
        let row: Option<UserRow> = sqlx::query_as(
            "SELECT id, username, role, password_hash, created_at FROM app_user WHERE id = ?1",
        )
        .bind(id.0)
        .fetch_optional(&self.pool)
        .await?;
        row.ok_or_else(|| StoreError::not_found(format!("user #{}", id.0)))?
            .into_record()
    }

    async fn list_users(&self) -> Result<Vec<UserRecord>> {
        let rows: Vec<UserRow> = sqlx::query_as(
            "SELECT id, username, role, password_hash, created_at FROM app_user
             ORDER BY username",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(UserRow::into_record).collect()
    }

    async fn count_users(&self) -> Result<u64> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM app_user")
            .fetch_one(&self.pool)
            .await?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    async fn set_password(&self, username: &str, password_hash: &str) -> Result<()> {
        let done = sqlx::query("UPDATE app_user SET password_hash = ?1 WHERE username = ?2")
            .bind(password_hash)
            .bind(username)
            .execute(&self.pool)
            .await?;
        if done.rows_affected() == 0 {
            return Err(user_not_found(username));
        }
        Ok(())
    }

    async fn set_role(&self, username: &str, role: Role) -> Result<()> {
        let done = sqlx::query("UPDATE app_user SET role = ?1 WHERE username = ?2")
            .bind(role.as_str())
            .bind(username)
            .execute(&self.pool)
            .await?;
        if done.rows_affected() == 0 {
            return Err(user_not_found(username));
        }
        Ok(())
    }

    async fn delete_user(&self, username: &str) -> Result<()> {
        let done = sqlx::query("DELETE FROM app_user WHERE username = ?1")
            .bind(username)
            .execute(&self.pool)
            .await?;
        if done.rows_affected() == 0 {
            return Err(user_not_found(username));
        }
        Ok(())
    }

    async fn create_api_token(&self, token: NewApiToken) -> Result<ApiTokenRecord> {
        let inserted: std::result::Result<i64, sqlx::Error> = sqlx::query_scalar(
            "INSERT INTO api_token (user_id, name, token_hash, created_at, expires_at)
             VALUES (?1, ?2, ?3, ?4, ?5) RETURNING id",
        )
        .bind(token.user_id.0)
        .bind(token.name.as_str())
        .bind(token.token_hash.as_str())
        .bind(ts(token.created_at))
        .bind(ts_opt(token.expires_at))
        .fetch_one(&self.pool)
        .await;
        match inserted {
            Ok(id) => Ok(ApiTokenRecord {
                id: TokenId(id),
                user_id: token.user_id,
                name: token.name,
                created_at: token.created_at,
                expires_at: token.expires_at,
            }),
            Err(e) if is_unique_violation(&e) => {
                Err(StoreError::conflict("an API token with this secret exists"))
            }
            Err(e) if super::conv::is_foreign_key_violation(&e) => {
                Err(StoreError::not_found(format!("user #{}", token.user_id.0)))
            }
            Err(e) => Err(e.into()),
        }
    }

    async fn find_api_token(&self, token_hash: &str) -> Result<(ApiTokenRecord, UserRecord)> {
        let row: Option<TokenRow> = sqlx::query_as(
            "SELECT id, user_id, name, created_at, expires_at FROM api_token
             WHERE token_hash = ?1",
        )
        .bind(token_hash)
        .fetch_optional(&self.pool)
        .await?;
        let token = row
            .ok_or_else(|| StoreError::not_found("API token"))?
            .into_record()?;
        let user = self.get_user_by_id(token.user_id).await?;
        Ok((token, user))
    }

    async fn list_api_tokens(&self, user: UserId) -> Result<Vec<ApiTokenRecord>> {
        let rows: Vec<TokenRow> = sqlx::query_as(
            "SELECT id, user_id, name, created_at, expires_at FROM api_token
             WHERE user_id = ?1 ORDER BY id",
        )
        .bind(user.0)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(TokenRow::into_record).collect()
    }

    async fn delete_api_token(&self, id: TokenId) -> Result<()> {
        let done = sqlx::query("DELETE FROM api_token WHERE id = ?1")
            .bind(id.0)
            .execute(&self.pool)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::not_found(format!("API token #{}", id.0)));
        }
        Ok(())
    }

    async fn create_session(&self, session: SessionRecord) -> Result<()> {
        let done = sqlx::query(
            "INSERT INTO web_session (session_hash, user_id, csrf_token, created_at, expires_at)
             VALUES (?1, ?2, ?3, ?4, ?5)",
        )
        .bind(session.session_hash.as_str())
        .bind(session.user_id.0)
        .bind(session.csrf_token.as_str())
        .bind(ts(session.created_at))
        .bind(ts(session.expires_at))
        .execute(&self.pool)
        .await;
        match done {
            Ok(_) => Ok(()),
            Err(e) if is_unique_violation(&e) => {
                Err(StoreError::conflict("a session with this secret exists"))
            }
            Err(e) => Err(e.into()),
        }
    }

    async fn find_session(&self, session_hash: &str) -> Result<(SessionRecord, UserRecord)> {
        let row: Option<SessionRow> = sqlx::query_as(
            "SELECT session_hash, user_id, csrf_token, created_at, expires_at FROM web_session
             WHERE session_hash = ?1",
        )
        .bind(session_hash)
        .fetch_optional(&self.pool)
        .await?;
        let session = row
            .ok_or_else(|| StoreError::not_found("session"))?
            .into_record()?;
        let user = self.get_user_by_id(session.user_id).await?;
        Ok((session, user))
    }

    async fn delete_session(&self, session_hash: &str) -> Result<()> {
        sqlx::query("DELETE FROM web_session WHERE session_hash = ?1")
            .bind(session_hash)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn delete_expired_sessions(&self, now: DateTime<Utc>) -> Result<u64> {
        let done = sqlx::query("DELETE FROM web_session WHERE expires_at < ?1")
            .bind(ts(now))
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }
}
