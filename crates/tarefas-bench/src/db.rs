//! The benchmark's own database: created on the server if missing, migrated with the
//! store's embedded migrations, and kept between runs (loading 1M rows is the slow part).

use anyhow::{Context, Result};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, PgConnection, PgPool};

/// Creates the database named in `url` if it does not exist (connecting to the server's
/// `postgres` database to do so), then opens a pool of `max_connections` on it and applies
/// the store's migrations.
pub async fn prepare(url: &str, max_connections: u32) -> Result<PgPool> {
    let options: PgConnectOptions = url
        .parse()
        .with_context(|| format!("--database-url {url:?} is not a Postgres URL"))?;
    let name = options
        .get_database()
        .context("--database-url names no database (e.g. …/tarefas_bench)")?
        .to_string();
    let mut admin = PgConnection::connect_with(&options.clone().database("postgres"))
        .await
        .context("connecting to the server's postgres database to create the bench database")?;
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(&name)
            .fetch_one(&mut admin)
            .await?;
    if !exists {
        // CREATE DATABASE takes no bound name: quote it as an identifier.
        let quoted = format!("\"{}\"", name.replace('"', "\"\""));
        sqlx::query(&format!("CREATE DATABASE {quoted}"))
            .execute(&mut admin)
            .await
            .with_context(|| format!("creating database {name}"))?;
        eprintln!("created database {name}");
    }
    admin.close().await?;
    let pool = PgPoolOptions::new()
        .max_connections(max_connections)
        .connect_with(options)
        .await
        .with_context(|| format!("connecting to {name}"))?;
    tarefas_store::MIGRATOR
        .run(&pool)
        .await
        .context("migrating the bench database")?;
    Ok(pool)
}

/// The server's version string (`PostgreSQL 15.x …`).
pub async fn server_version(pool: &PgPool) -> Result<String> {
    Ok(sqlx::query_scalar("SELECT version()")
        .fetch_one(pool)
        .await?)
}
