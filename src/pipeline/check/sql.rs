//! The SQL pass: every expression and query planned by DataFusion against empty tables of the
//! schemas the layers run it over, in a session like theirs.
//!
//! - derived columns and expectations: expressions over `clean`, the typed columns
//!   ([`clean_schema`]); an expectation must be boolean;
//! - facts: a query over `silver` (the typed columns and the derived ones) with a `date`
//!   column;
//! - dashboards: a query over `w` and `today` (the rows of `unified_<stream>`: silver's
//!   columns and `_source`), without an `as_of` column (the serving layer adds it);
//! - alert rules: a query over `w` with `subject`, `value` (a number), `triggering_ids` (a
//!   list) and `detail`.
//!
//! The SQL of a fact, dashboard or rule over a stream whose own SQL has mistakes is not
//! planned (its table's columns are not known).

use std::collections::BTreeMap;
use std::sync::Arc;

use deltalake::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use deltalake::datafusion::common::DFSchema;
use deltalake::datafusion::datasource::empty::EmptyTable;
use deltalake::datafusion::error::DataFusionError;
use deltalake::datafusion::execution::context::SQLOptions;
use deltalake::datafusion::logical_expr::LogicalPlan;
use deltalake::datafusion::prelude::SessionContext;

use super::Report;
use super::decode::{Doc, first_line, key_offset, sub};
use crate::layers::clean::clean_schema;
use crate::pipeline::active::compile;
use crate::pipeline::declaration::Declaration;

/// A DataFusion message, first line, without the backtrace.
fn message(e: DataFusionError) -> String {
    first_line(&e.strip_backtrace())
}

/// A session with `tables` registered (empty, of these schemas).
fn session(tables: &[(&str, &SchemaRef)]) -> Result<SessionContext, String> {
    let ctx = crate::layers::sql::session().map_err(message)?;
    for (name, schema) in tables {
        ctx.register_table(*name, Arc::new(EmptyTable::new(Arc::clone(schema))))
            .map_err(message)?;
    }
    Ok(ctx)
}

/// The plan of the query `sql` (a query only: no DDL, DML or statements), analysed and
/// optimized as a run would.
async fn plan(ctx: &SessionContext, sql: &str) -> Result<LogicalPlan, String> {
    let state = ctx.state();
    let plan = state.create_logical_plan(sql).await.map_err(message)?;
    SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false)
        .verify_plan(&plan)
        .map_err(message)?;
    state.optimize(&plan).map_err(message)?;
    Ok(plan)
}

/// Plans the expression `sql` over `clean` as silver would (`SELECT *, <sql> AS x FROM
/// clean`): its type, or why not.
async fn expression(
    ctx: &SessionContext,
    clean: &SchemaRef,
    sql: &str,
) -> Result<DataType, String> {
    // One expression, nothing after it.
    let df_schema = DFSchema::try_from(clean.as_ref().clone()).map_err(message)?;
    ctx.parse_sql_expr(sql, &df_schema).map_err(message)?;
    let p = plan(ctx, &format!("SELECT *, {sql} AS \"_checked\" FROM clean")).await?;
    let fields = p.schema().fields();
    Ok(fields
        .last()
        .map_or(DataType::Null, |f| f.data_type().clone()))
}

fn arrow(p: &LogicalPlan) -> SchemaRef {
    Arc::new(p.schema().as_arrow().clone())
}

fn has(p: &LogicalPlan, column: &str) -> bool {
    p.schema().has_column_with_unqualified_name(column)
}

/// Checks every SQL text of the well-shaped elements.
pub(super) async fn check(report: &mut Report<'_>, doc: &Doc<'_>) {
    // The silver and unified schemas of each stream whose own SQL plans.
    let mut tables: BTreeMap<String, (SchemaRef, SchemaRef)> = BTreeMap::new();
    let good: Vec<_> = doc.streams.iter().filter(|e| e.decl.is_some()).collect();
    let active = compile(
        Declaration {
            streams: good.iter().filter_map(|e| e.decl.clone()).collect(),
            ..Declaration::default()
        },
        None,
    );
    for (e, spec) in good.iter().zip(active.streams) {
        let Some(s) = &e.decl else { continue };
        let clean = clean_schema(spec);
        // Duplicate columns are reported by the meaning pass.
        let mut names = std::collections::BTreeSet::new();
        if !clean
            .fields()
            .iter()
            .all(|f| names.insert(f.name().as_str()))
        {
            continue;
        }
        let ctx = match session(&[("clean", &clean)]) {
            Ok(c) => c,
            Err(m) => {
                report.at(
                    e.raw.span().start,
                    &e.key,
                    format!("cannot plan its SQL: {m}"),
                );
                continue;
            }
        };
        let mut ok = true;
        for (i, d) in s.derived.iter().enumerate() {
            let raw = sub(&e.raw, "derived", i).unwrap_or(&e.raw);
            if let Err(m) = expression(&ctx, &clean, &d.sql).await {
                ok = false;
                report.at(
                    key_offset(raw, "sql"),
                    format!("{}.derived[{}].sql", e.key, d.name),
                    m,
                );
            }
        }
        for (i, x) in s.expectations.iter().enumerate() {
            let raw = sub(&e.raw, "expect", i).unwrap_or(&e.raw);
            let key = format!("{}.expect[{}].sql", e.key, x.name);
            match expression(&ctx, &clean, &x.sql).await {
                Ok(DataType::Boolean | DataType::Null) => {}
                Ok(other) => report.at(
                    key_offset(raw, "sql"),
                    key,
                    format!("an expectation is boolean, this is {other}"),
                ),
                Err(m) => report.at(key_offset(raw, "sql"), key, m),
            }
        }
        if !ok {
            continue;
        }
        let cols: Vec<String> = s
            .derived
            .iter()
            .map(|d| format!(", {} AS \"{}\"", d.sql, d.name))
            .collect();
        let silver = match plan(&ctx, &format!("SELECT *{} FROM clean", cols.concat())).await {
            Ok(p) => arrow(&p),
            Err(m) => {
                report.at(
                    key_offset(&e.raw, "derived"),
                    format!("{}.derived", e.key),
                    m,
                );
                continue;
            }
        };
        let mut unified: Vec<Field> = silver.fields().iter().map(|f| f.as_ref().clone()).collect();
        unified.push(Field::new("_source", DataType::Utf8, false));
        tables.insert(s.name.clone(), (silver, Arc::new(Schema::new(unified))));
    }
    for e in &doc.facts {
        let Some(f) = &e.decl else { continue };
        let Some((silver, _)) = tables.get(&f.stream) else {
            continue;
        };
        let at = key_offset(&e.raw, "sql");
        let key = format!("{}.sql", e.key);
        let planned = match session(&[("silver", silver)]) {
            Ok(ctx) => plan(&ctx, &f.sql).await,
            Err(m) => Err(m),
        };
        match planned {
            Ok(p) if !has(&p, "date") => report.at(
                at,
                key,
                "a fact outputs a `date` column (its partition, replaced for the dates a run touched)",
            ),
            Ok(_) => {}
            Err(m) => report.at(at, key, m),
        }
    }
    for e in &doc.dashboards {
        let Some(d) = &e.decl else { continue };
        let Some((_, unified)) = tables.get(&d.stream) else {
            continue;
        };
        let at = key_offset(&e.raw, "sql");
        let key = format!("{}.sql", e.key);
        let planned = match session(&[("w", unified), ("today", unified)]) {
            Ok(ctx) => plan(&ctx, &d.sql).await,
            Err(m) => Err(m),
        };
        match planned {
            Ok(p) if has(&p, "as_of") => report.at(
                at,
                key,
                "a dashboard may not output `as_of`: the serving layer adds it",
            ),
            Ok(_) => {}
            Err(m) => report.at(at, key, m),
        }
    }
    for e in &doc.alerts {
        let Some(a) = &e.decl else { continue };
        let Some((_, unified)) = tables.get(&a.stream) else {
            continue;
        };
        let at = key_offset(&e.raw, "sql");
        let key = format!("{}.sql", e.key);
        let ctx = match session(&[("w", unified)]) {
            Ok(ctx) => ctx,
            Err(m) => {
                report.at(at, key, m);
                continue;
            }
        };
        let p = match plan(&ctx, &a.sql).await {
            Ok(p) => p,
            Err(m) => {
                report.at(at, key, m);
                continue;
            }
        };
        let missing: Vec<&str> = ["subject", "value", "triggering_ids", "detail"]
            .into_iter()
            .filter(|c| !has(&p, c))
            .collect();
        if !missing.is_empty() {
            report.at(
                at,
                key,
                format!(
                    "an alert rule outputs `subject`, `value`, `triggering_ids` and `detail`: no {}",
                    missing
                        .iter()
                        .map(|c| format!("`{c}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            );
            continue;
        }
        // As the serving layer reads its rows: a number and a list of ids.
        let conformed = format!(
            "SELECT CAST(subject AS VARCHAR) AS subject, CAST(value AS DOUBLE) AS value, \
             CAST(coalesce(cardinality(triggering_ids), 0) AS BIGINT) AS n, \
             CAST(detail AS VARCHAR) AS detail FROM ({})",
            a.sql
        );
        if let Err(m) = plan(&ctx, &conformed).await {
            report.at(
                at,
                key,
                format!("`value` must be a number and `triggering_ids` a list: {m}"),
            );
        }
    }
}
