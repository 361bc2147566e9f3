//! The saga's books checked against the provider's ledger ([`crate::provider::Ledger`]): which
//! attempts were charged comes from the provider's own events, not from the shop's rows. Per
//! order, what the provider charged minus what the shop refunded is the order's amount when it
//! ended PAID and zero otherwise; every charge the shop did not keep is refunded, once, with its
//! `payment.refunded` event; a charge the shop could not count (another amount, or a listing that
//! had finished) is flagged to the admin, never silently dropped.

use crate::provider::{Ledger, ProviderEvent};
use sqlx::AnyPool;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// Which orders a check covers.
#[derive(Debug, Clone)]
pub enum Scope {
    Everything,
    Listing {
        sell_window_id: String,
        product_id: String,
    },
}

impl Scope {
    fn filter(&self, alias: &str) -> String {
        match self {
            Scope::Everything => "1 = 1".into(),
            Scope::Listing { .. } => {
                format!("{alias}.sell_window_id = $1 AND {alias}.product_id = $2")
            }
        }
    }

    fn bind<'q>(
        &'q self,
        q: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>,
    ) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
        match self {
            Scope::Everything => q,
            Scope::Listing {
                sell_window_id,
                product_id,
            } => q.bind(sell_window_id.as_str()).bind(product_id.as_str()),
        }
    }
}

/// What a balanced check found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Books {
    pub orders: usize,
    pub charged: usize,
    pub refunded: usize,
    /// Charges the shop could not count, each told to the admin.
    pub flagged: usize,
}

#[derive(Debug, Clone)]
struct Attempt {
    order_id: String,
    amount: i64,
    status: String,
    charged: bool,
    refunded: bool,
}

#[derive(Debug, Clone)]
struct OrderBooks {
    status: String,
    amount: i64,
    paid_by: Option<String>,
    refund_events: i64,
}

/// Waits (at most `patience`) until every charge in the ledger has been taken in by the shop,
/// then checks the books; the error says what disagrees.
pub async fn check(
    pool: &AnyPool,
    ledger: &Ledger,
    scope: &Scope,
    patience: Duration,
) -> Result<Books, String> {
    let deadline = tokio::time::Instant::now() + patience;
    loop {
        let r = check_once(pool, ledger, scope).await;
        match r {
            Ok(books) => return Ok(books),
            Err(e) if tokio::time::Instant::now() >= deadline => return Err(e),
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

async fn check_once(pool: &AnyPool, ledger: &Ledger, scope: &Scope) -> Result<Books, String> {
    let db = |e: sqlx::Error| format!("reading the books: {e}");
    let attempts = attempts(pool, scope).await.map_err(db)?;
    let orders = orders(pool, scope).await.map_err(db)?;
    let (taken, flagged) = callbacks(pool).await.map_err(db)?;
    let told = admin_told(pool).await.map_err(db)?;
    let charges: BTreeMap<String, _> = ledger
        .charges()
        .into_iter()
        .filter(|(payment, _)| attempts.contains_key(payment))
        .collect();
    let intake = Intake {
        taken,
        flagged,
        told,
    };
    let (expected_charged, flagged_here) = charges_taken_in(&charges, &attempts, &intake)?;
    let charged = charged_as_the_provider_says(&attempts, &expected_charged)?;
    let refunded = refunded_unless_kept(&orders, &attempts, &expected_charged)?;
    per_order(&orders, &attempts, &expected_charged)?;
    Ok(Books {
        orders: orders.len(),
        charged: charged.len(),
        refunded: refunded.len(),
        flagged: flagged_here,
    })
}

/// The shop's intake of the provider's callbacks: the events it took in and those it flagged
/// (by event id), and the orders the admin was told about.
struct Intake {
    taken: BTreeSet<String>,
    flagged: BTreeSet<String>,
    told: BTreeSet<String>,
}

/// Every charge the provider made was taken in, or flagged to the admin; one taken in was
/// counted at its attempt's amount. The charges taken in, and how many were flagged.
fn charges_taken_in(
    charges: &BTreeMap<String, Vec<ProviderEvent>>,
    attempts: &BTreeMap<String, Attempt>,
    intake: &Intake,
) -> Result<(BTreeSet<String>, usize), String> {
    let mut expected_charged = BTreeSet::new();
    let mut flagged_here = 0;
    for (payment, events) in charges {
        if events.iter().any(|e| intake.taken.contains(&e.event_id)) {
            expected_charged.insert(payment.clone());
        } else if let Some(e) = events.iter().find(|e| intake.flagged.contains(&e.event_id)) {
            if !intake.told.contains(&e.order_id) {
                return Err(format!(
                    "{payment}: a charge the shop did not count, and the admin was not told"
                ));
            }
            flagged_here += 1;
        } else {
            return Err(format!(
                "the provider charged {payment} ({:?}) and the shop has not taken it in",
                events.iter().map(|e| &e.event_id).collect::<Vec<_>>()
            ));
        }
        for e in events {
            if let Some(a) = e.amount_minor
                && intake.taken.contains(&e.event_id)
                && a != attempts[payment].amount
            {
                return Err(format!(
                    "{payment}: counted a charge of {a}, not its amount"
                ));
            }
        }
    }
    Ok((expected_charged, flagged_here))
}

/// The attempts charged in the books, which must be those the provider charged.
fn charged_as_the_provider_says(
    attempts: &BTreeMap<String, Attempt>,
    expected_charged: &BTreeSet<String>,
) -> Result<BTreeSet<String>, String> {
    let charged = attempts_where(attempts, |a| a.charged);
    if charged != *expected_charged {
        return Err(format!(
            "charged in the books but not by the provider: {:?}; charged by the provider but not in the books: {:?}",
            charged.difference(expected_charged).collect::<Vec<_>>(),
            expected_charged.difference(&charged).collect::<Vec<_>>()
        ));
    }
    Ok(charged)
}

/// The attempts refunded in the books, which must be every charge a PAID order did not keep.
fn refunded_unless_kept(
    orders: &BTreeMap<String, OrderBooks>,
    attempts: &BTreeMap<String, Attempt>,
    expected_charged: &BTreeSet<String>,
) -> Result<BTreeSet<String>, String> {
    let kept: BTreeSet<String> = orders
        .values()
        .filter(|o| o.status == "PAID")
        .filter_map(|o| o.paid_by.clone())
        .collect();
    let expected_refunded: BTreeSet<String> = expected_charged.difference(&kept).cloned().collect();
    let refunded = attempts_where(attempts, |a| a.refunded);
    if refunded != expected_refunded {
        return Err(format!(
            "refunded without need: {:?}; charged, not kept and not refunded: {:?}",
            refunded.difference(&expected_refunded).collect::<Vec<_>>(),
            expected_refunded.difference(&refunded).collect::<Vec<_>>()
        ));
    }
    Ok(refunded)
}

/// The ids of the attempts `holds` is true of.
fn attempts_where(
    attempts: &BTreeMap<String, Attempt>,
    holds: impl Fn(&Attempt) -> bool,
) -> BTreeSet<String> {
    attempts
        .iter()
        .filter(|(_, a)| holds(a))
        .map(|(id, _)| id.clone())
        .collect()
}

/// Per order: charged − refunded = amount if PAID else 0; the attempt that paid was charged;
/// one `payment.refunded` per refund; each attempt's status agrees with its books.
fn per_order(
    orders: &BTreeMap<String, OrderBooks>,
    attempts: &BTreeMap<String, Attempt>,
    charged_by_provider: &BTreeSet<String>,
) -> Result<(), String> {
    let mut sums: BTreeMap<&str, (i64, i64, i64)> = BTreeMap::new();
    for (id, a) in attempts {
        let s = sums.entry(a.order_id.as_str()).or_default();
        if charged_by_provider.contains(id) {
            s.0 += a.amount;
        }
        if a.refunded {
            s.1 += a.amount;
            s.2 += 1;
        }
        let status_agrees = match a.status.as_str() {
            "SUCCEEDED" => a.charged && !a.refunded,
            "REFUNDED" => a.charged && a.refunded,
            _ => !a.refunded,
        };
        if !status_agrees {
            return Err(format!(
                "attempt {id} is {} with charged={} refunded={}",
                a.status, a.charged, a.refunded
            ));
        }
    }
    for (id, o) in orders {
        let (charged, refunded, refunds) = sums.get(id.as_str()).copied().unwrap_or_default();
        let kept = if o.status == "PAID" { o.amount } else { 0 };
        if charged - refunded != kept {
            return Err(format!(
                "order {id} ({}, amount {}): the provider charged {charged}, the shop refunded {refunded}",
                o.status, o.amount
            ));
        }
        if o.status == "PAID"
            && !o
                .paid_by
                .as_ref()
                .is_some_and(|p| charged_by_provider.contains(p))
        {
            return Err(format!(
                "order {id} is PAID by {:?}, which the provider never charged",
                o.paid_by
            ));
        }
        if o.refund_events != refunds {
            return Err(format!(
                "order {id}: {refunds} refunds in the books, {} payment.refunded events",
                o.refund_events
            ));
        }
    }
    Ok(())
}

async fn attempts(pool: &AnyPool, scope: &Scope) -> Result<BTreeMap<String, Attempt>, sqlx::Error> {
    let sql = format!(
        "SELECT p.id, p.order_id, p.amount_minor, p.status, \
                CASE WHEN p.charged_at IS NULL THEN 0 ELSE 1 END, \
                CASE WHEN p.refunded_at IS NULL THEN 0 ELSE 1 END \
         FROM payments p WHERE {}",
        scope.filter("p")
    );
    let rows: Vec<(String, String, i64, String, i32, i32)> = scope
        .bind(sqlx::query(&sql))
        .fetch_all(pool)
        .await
        .and_then(|rows| {
            rows.iter()
                .map(|r| {
                    use sqlx::Row;
                    Ok((
                        r.try_get(0)?,
                        r.try_get(1)?,
                        r.try_get(2)?,
                        r.try_get(3)?,
                        r.try_get::<i32, _>(4)?,
                        r.try_get::<i32, _>(5)?,
                    ))
                })
                .collect()
        })?;
    Ok(rows
        .into_iter()
        .map(|(id, order_id, amount, status, charged, refunded)| {
            let a = Attempt {
                order_id,
                amount,
                status,
                charged: charged == 1,
                refunded: refunded == 1,
            };
            (id, a)
        })
        .collect())
}

async fn orders(
    pool: &AnyPool,
    scope: &Scope,
) -> Result<BTreeMap<String, OrderBooks>, sqlx::Error> {
    use sqlx::Row;
    // The refund events counted once per listing and joined, not per order: `events` has no
    // index by order, and a count per order reads it once for each of 100,000 orders.
    let sql = format!(
        "SELECT o.id, o.status, o.amount_minor, o.paid_by, COALESCE(r.n, 0) \
         FROM orders o LEFT JOIN (SELECT e.order_id, COUNT(*) AS n FROM events e \
                                  WHERE e.name = 'payment.refunded' AND {} GROUP BY e.order_id) r \
              ON r.order_id = o.id \
         WHERE {}",
        scope.filter("e"),
        scope.filter("o")
    );
    let rows = scope.bind(sqlx::query(&sql)).fetch_all(pool).await?;
    rows.iter()
        .map(|r| {
            Ok((
                r.try_get::<String, _>(0)?,
                OrderBooks {
                    status: r.try_get(1)?,
                    amount: r.try_get(2)?,
                    paid_by: r.try_get(3)?,
                    refund_events: r.try_get(4)?,
                },
            ))
        })
        .collect()
}

/// Callbacks the shop took in (applied to their listing), and those it recorded as not counted
/// (a note says why: another amount, a listing that had finished).
async fn callbacks(pool: &AnyPool) -> Result<(BTreeSet<String>, BTreeSet<String>), sqlx::Error> {
    let rows: Vec<(String, i32)> = sqlx::query_as(
        "SELECT event_id, CASE WHEN applied_at IS NOT NULL THEN 1 ELSE 0 END FROM payment_callbacks \
         WHERE applied_at IS NOT NULL OR note IS NOT NULL",
    )
    .fetch_all(pool)
    .await?;
    let (mut taken, mut flagged) = (BTreeSet::new(), BTreeSet::new());
    for (event, applied) in rows {
        if applied == 1 {
            taken.insert(event);
        } else {
            flagged.insert(event);
        }
    }
    Ok((taken, flagged))
}

/// Orders the admin was told about a charge the shop could not count.
async fn admin_told(pool: &AnyPool) -> Result<BTreeSet<String>, sqlx::Error> {
    let rows: Vec<(String,)> = sqlx::query_as(
        "SELECT order_id FROM notifications WHERE recipient_kind = 'ADMIN' AND order_id IS NOT NULL \
         AND kind IN ('payment_amount_mismatch', 'manual_refund_needed')",
    )
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(|(o,)| o).collect())
}
