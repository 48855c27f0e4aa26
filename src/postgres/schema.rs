//! The table, its notify trigger, and the statements the store runs.

/// The table every replica reads and the admin API writes; also the
/// `LISTEN` channel.
pub(crate) const TABLE: &str = "proxy_auth_keys";

/// Serializes concurrent schema creation: N replicas starting at once would
/// otherwise race on `CREATE TABLE IF NOT EXISTS` (which is not atomic
/// against itself in PostgreSQL) and one would fail with a duplicate-type
/// error. The number is arbitrary but fixed: "proxyauth" in ASCII, truncated.
const SCHEMA_LOCK: i64 = 0x70_72_6f_78_79_61_75_74;

/// The policy columns, in the order every query reads them (after label,
/// key_digest, expires_at, active, holders), with their SQL types.
pub(crate) const POLICY_COLUMNS: [(&str, &str); 6] = [
    ("models", "text[]"),
    ("routes", "text[]"),
    ("allowed_ips", "text[]"),
    ("rpm", "integer"),
    ("burst", "integer"),
    ("max_concurrent", "integer"),
];

/// The CHECK constraints on the policy columns, by name: what can be
/// checked without parsing (the replicas parse every row they load, and
/// skip the ones these let through but [`KeySet::add`](crate::KeySet::add)
/// refuses, such as a bad CIDR block). A list is NULL (no restriction) or a
/// one-dimensional array of at least one non-NULL item; a limit is NULL or
/// 1 to [`limit::MAX`](crate::limit::MAX); `burst` needs `rpm`.
pub(crate) fn policy_constraints() -> Vec<(String, String)> {
    let max = crate::limit::MAX;
    let list = |column: &str| {
        (
            format!("{TABLE}_{column}_list"),
            format!(
                "{column} IS NULL OR CASE WHEN array_ndims({column}) = 1 \
                 THEN array_position({column}, NULL) IS NULL ELSE false END"
            ),
        )
    };
    let range = |column: &str| {
        (
            format!("{TABLE}_{column}_range"),
            format!("{column} BETWEEN 1 AND {max}"),
        )
    };
    vec![
        list("models"),
        list("routes"),
        list("allowed_ips"),
        range("rpm"),
        range("burst"),
        range("max_concurrent"),
        (
            BURST_NEEDS_RPM.to_owned(),
            "burst IS NULL OR rpm IS NOT NULL".to_owned(),
        ),
    ]
}

/// The constraint that refuses a `burst` without an `rpm`, which
/// [`KeyAdmin::set`](super::KeyAdmin::set) can only find out from the row.
pub(crate) const BURST_NEEDS_RPM: &str = "proxy_auth_keys_burst_needs_rpm";

/// Idempotent; run by every replica at start and by the admin API, under
/// one advisory lock, as one transaction (a simple-query batch).
///
/// The original columns have no CHECK constraints on purpose: rows written
/// by hand or by older tools are validated when read (a bad row is skipped
/// and logged), so one bad row can never stop a replica from loading the
/// others. The policy columns are added to a table of any age with `ADD
/// COLUMN IF NOT EXISTS` and get the checks of [`policy_constraints`], each
/// added if no constraint of its name exists; `NOT VALID`, so adding one
/// never fails on (or scans for) rows already there, which the replicas
/// judge when they read them.
pub(crate) fn create_statements() -> String {
    let columns = POLICY_COLUMNS
        .iter()
        .map(|(column, kind)| format!("    ADD COLUMN IF NOT EXISTS {column} {kind}"))
        .collect::<Vec<_>>()
        .join(",\n");
    let constraints: String = policy_constraints()
        .iter()
        .map(|(name, check)| {
            format!(
                "    IF NOT EXISTS (SELECT 1 FROM pg_constraint
                   WHERE conname = '{name}' AND conrelid = '{TABLE}'::regclass) THEN
        ALTER TABLE {TABLE} ADD CONSTRAINT {name} CHECK ({check}) NOT VALID;
    END IF;
"
            )
        })
        .collect();
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
-- The key's scopes and limits (NULL: none); a table of an older version
-- gets them here.
ALTER TABLE {TABLE}
{columns};
DO $$
BEGIN
{constraints}END
$$;
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
-- Digests reach the table in one spelling, lowercase, so the UNIQUE
-- constraint sees two spellings of one key as the same value.
CREATE OR REPLACE FUNCTION {TABLE}_normalize() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.key_digest ~* '^sha256:[0-9a-f]{{64}}$' THEN
        NEW.key_digest := lower(NEW.key_digest);
    END IF;
    RETURN NEW;
END
$$;
-- Rows written before that trigger existed: normalized where no other row
-- holds the same key (those pairs are refused by the replicas instead).
UPDATE {TABLE} AS t SET key_digest = lower(t.key_digest)
    WHERE t.key_digest ~* '^sha256:[0-9a-f]{{64}}$' AND t.key_digest <> lower(t.key_digest)
    AND NOT EXISTS (SELECT 1 FROM {TABLE} AS o
                    WHERE o.id <> t.id AND lower(o.key_digest) = lower(t.key_digest));
-- Finds the rows that hold the same key in any spelling (see select_labels).
CREATE INDEX IF NOT EXISTS {TABLE}_digest_lower ON {TABLE} (lower(key_digest));
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_trigger
                   WHERE tgname = '{TABLE}_normalize' AND tgrelid = '{TABLE}'::regclass) THEN
        CREATE TRIGGER {TABLE}_normalize BEFORE INSERT OR UPDATE OF key_digest ON {TABLE}
            FOR EACH ROW EXECUTE FUNCTION {TABLE}_normalize();
    END IF;
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

/// Every key in force: not revoked and not yet expired; plus every row,
/// active or not, that holds the same key as another row in any spelling
/// of its digest (`holders` over 1), so a replica refuses the key under
/// every label rather than accepting it under one. Expired rows stay in
/// the table for the record but cost no memory on the replicas; a key that
/// expires after the load is refused by the key set at its expiry.
///
/// Columns: label, key_digest, expires_at, active, holders, then the
/// [`POLICY_COLUMNS`].
pub(crate) fn select_active() -> String {
    let policy = policy_list();
    format!(
        "SELECT label, key_digest, expires_at, active, holders, {policy} FROM ( \
           SELECT label, key_digest, expires_at, {policy}, \
             revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now()) AS active, \
             count(*) OVER (PARTITION BY lower(key_digest)) AS holders \
           FROM {TABLE}) AS keys \
         WHERE active OR holders > 1"
    )
}

/// `models, routes, allowed_ips, rpm, burst, max_concurrent`.
pub(crate) fn policy_list() -> String {
    POLICY_COLUMNS.map(|(column, _)| column).join(", ")
}

/// The active rows of the labels named by a batch of notifications (labels
/// absent from the answer are removed), each with the number of rows that
/// hold its key in any spelling (found through the `lower(key_digest)`
/// index); more than one sends the replica to a full reload.
pub(crate) fn select_labels() -> String {
    let policy = policy_list();
    format!(
        "SELECT label, key_digest, expires_at, true AS active, \
           (SELECT count(*) FROM {TABLE} AS o WHERE lower(o.key_digest) = lower(t.key_digest)) AS holders, \
           {policy} \
         FROM {TABLE} AS t \
         WHERE label = ANY($1) AND revoked_at IS NULL \
         AND (expires_at IS NULL OR expires_at > now())"
    )
}

pub(crate) fn listen() -> String {
    format!("LISTEN {TABLE}")
}

/// Creates the table, its policy columns and their checks, its triggers
/// and index if any is missing (and normalizes the digests of rows written
/// before the normalizing trigger). Skipped when all are there, so
/// replicas whose database user may only read the table (and `LISTEN`,
/// which needs no privilege) work once an admin created it. A table from
/// an older version that such a user may not upgrade is used as it is,
/// with a warning, if it has the policy columns: the replicas' own checks
/// (one key under two labels is refused, every policy is parsed) do not
/// depend on the upgrade. Without the policy columns it is an error: the
/// store never loads a table whose policies it cannot read.
pub(crate) async fn ensure(
    client: &tokio_postgres::Client,
    address: &str,
) -> Result<(), super::StoreError> {
    let columns = POLICY_COLUMNS
        .map(|(column, _)| format!("'{column}'"))
        .join(", ");
    let constraints = policy_constraints()
        .into_iter()
        .map(|(name, _)| format!("'{name}'"))
        .collect::<Vec<_>>();
    let check = format!(
        "SELECT to_regclass('{TABLE}') IS NOT NULL, \
         (SELECT count(*) FROM pg_attribute WHERE attrelid = to_regclass('{TABLE}') \
          AND NOT attisdropped AND attname IN ({columns})) = {column_count}, \
         to_regclass('{TABLE}') IS NOT NULL AND to_regclass('{TABLE}_digest_lower') IS NOT NULL AND \
         (SELECT count(*) FROM pg_trigger WHERE tgrelid = to_regclass('{TABLE}') \
          AND tgname IN ('{TABLE}_notify', '{TABLE}_notify_truncate', '{TABLE}_normalize')) = 3 AND \
         (SELECT count(*) FROM pg_constraint WHERE conrelid = to_regclass('{TABLE}') \
          AND conname IN ({names})) = {constraint_count}",
        column_count = POLICY_COLUMNS.len(),
        names = constraints.join(", "),
        constraint_count = constraints.len(),
    );
    let (exists, has_policies, complete) = client
        .query_one(&check, &[])
        .await
        .and_then(|row| {
            Ok((
                row.try_get::<_, bool>(0)?,
                row.try_get::<_, bool>(1)?,
                row.try_get::<_, bool>(2)?,
            ))
        })
        .map_err(|e| super::db_error(address, "looking for the key table", e))?;
    if complete && has_policies {
        return Ok(());
    }
    match client.batch_execute(&create_statements()).await {
        Ok(()) => Ok(()),
        Err(e)
            if exists
                && !has_policies
                && e.code() == Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE) =>
        {
            Err(super::db_error(
                address,
                "adding the policy columns (models, routes, allowed_ips, rpm, burst, max_concurrent) to a key table made by an older version, which this database user may not alter; run the `keys` CLI or any replica once as the table's owner",
                e,
            ))
        }
        Err(e)
            if exists
                && e.code() == Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE) =>
        {
            tracing::warn!(
                target: "proxy_auth",
                address,
                "the key table was made by an older version and this database user may not upgrade it (a digest-normalizing trigger, an index, the policy columns' checks); using it as it is. Run the `keys` CLI or any replica once as the table's owner to upgrade it"
            );
            Ok(())
        }
        Err(e) => Err(super::db_error(address, "creating the key table", e)),
    }
}
