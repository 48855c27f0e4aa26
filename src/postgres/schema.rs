//! The table, its notify trigger, and the statements the store runs.

/// The table every replica reads and the admin API writes; also the
/// `LISTEN` channel.
pub(crate) const TABLE: &str = "proxy_auth_keys";

/// Serializes concurrent schema creation: N replicas starting at once would
/// otherwise race on `CREATE TABLE IF NOT EXISTS` (which is not atomic
/// against itself in PostgreSQL) and one would fail with a duplicate-type
/// error. The number is arbitrary but fixed: "proxyauth" in ASCII, truncated.
const SCHEMA_LOCK: i64 = 0x70_72_6f_78_79_61_75_74;

/// Idempotent; run by every replica at start and by the admin API. No CHECK
/// constraints on purpose: rows written by hand or by older tools are
/// validated when read (a bad row is skipped and logged), so one bad row can
/// never stop a replica from loading the others.
pub(crate) fn create_statements() -> String {
    format!(
        r#"
SELECT pg_advisory_xact_lock({SCHEMA_LOCK});
CREATE TABLE IF NOT EXISTS {TABLE} (
    id          bigserial   PRIMARY KEY,
    label       text        NOT NULL UNIQUE,
    key_digest  text        NOT NULL UNIQUE,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz,
    revoked_at  timestamptz
);
CREATE OR REPLACE FUNCTION {TABLE}_notify() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    -- The payload names the row, never its digest: replicas re-read it.
    IF TG_OP = 'TRUNCATE' THEN
        PERFORM pg_notify('{TABLE}', 'TRUNCATE ');
    ELSIF TG_OP = 'DELETE' THEN
        PERFORM pg_notify('{TABLE}', 'DELETE ' || OLD.label);
    ELSE
        PERFORM pg_notify('{TABLE}', TG_OP || ' ' || NEW.label);
        IF TG_OP = 'UPDATE' AND OLD.label IS DISTINCT FROM NEW.label THEN
            PERFORM pg_notify('{TABLE}', 'UPDATE ' || OLD.label);
        END IF;
    END IF;
    RETURN NULL;
END
$$;
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_trigger
                   WHERE tgname = '{TABLE}_notify' AND tgrelid = '{TABLE}'::regclass) THEN
        CREATE TRIGGER {TABLE}_notify AFTER INSERT OR UPDATE OR DELETE ON {TABLE}
            FOR EACH ROW EXECUTE FUNCTION {TABLE}_notify();
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_trigger
                   WHERE tgname = '{TABLE}_notify_truncate' AND tgrelid = '{TABLE}'::regclass) THEN
        CREATE TRIGGER {TABLE}_notify_truncate AFTER TRUNCATE ON {TABLE}
            FOR EACH STATEMENT EXECUTE FUNCTION {TABLE}_notify();
    END IF;
END
$$;
"#
    )
}

/// Every key in force: not revoked and not yet expired. Expired rows stay
/// in the table for the record but cost no memory on the replicas; a key
/// that expires after the load is refused by the key set at its expiry.
pub(crate) fn select_active() -> String {
    format!(
        "SELECT label, key_digest, expires_at FROM {TABLE} \
         WHERE revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now())"
    )
}

/// The rows of the labels named by a batch of notifications; labels absent
/// from the answer are removed.
pub(crate) fn select_labels() -> String {
    format!(
        "SELECT label, key_digest, expires_at FROM {TABLE} \
         WHERE label = ANY($1) AND revoked_at IS NULL \
         AND (expires_at IS NULL OR expires_at > now())"
    )
}

pub(crate) fn listen() -> String {
    format!("LISTEN {TABLE}")
}

/// Creates the table and triggers if any is missing. Skipped when all are
/// there, so replicas whose database user may only read the table (and
/// `LISTEN`, which needs no privilege) work once an admin created it.
pub(crate) async fn ensure(
    client: &tokio_postgres::Client,
    address: &str,
) -> Result<(), super::StoreError> {
    let check = format!(
        "SELECT to_regclass('{TABLE}') IS NOT NULL AND \
         (SELECT count(*) FROM pg_trigger WHERE tgrelid = to_regclass('{TABLE}') \
          AND tgname IN ('{TABLE}_notify', '{TABLE}_notify_truncate')) = 2"
    );
    let present = client
        .query_one(&check, &[])
        .await
        .and_then(|row| row.try_get::<_, bool>(0))
        .map_err(|e| super::db_error(address, "looking for the key table", e))?;
    if !present {
        client
            .batch_execute(&create_statements())
            .await
            .map_err(|e| super::db_error(address, "creating the key table", e))?;
    }
    Ok(())
}
