//! The listing's rules, driven without a server: a model of the store decides reservations on
//! its quota row with the quota rules (as the API's reserve transaction does) and applies the
//! order rules to its orders and attempts (as the activities do to rows), moving its figures
//! by each change's delta; the listing machine decides the saga and adopts the figures each
//! write answers with, and those the reservations' progress signals carry, which arrive late,
//! out of order, twice or never. After every step the quota is never oversold, the row equals
//! the sums over the orders, nothing is reserved past a fence, and the books balance: per
//! order, charged minus refunded is its amount when it is PAID and zero otherwise, and only
//! charged attempts are refunded, each once. Once every signal is delivered the listing's
//! figures equal the row's. The interleavings include outcomes out of order for any attempt
//! (failed → succeeded, succeeded → failed, expired → succeeded, two attempts succeeding,
//! duplicates), retries, deadlines, customer and admin cancels, confirm before and after the
//! threshold, and close under either policy.

use proptest::prelude::*;
use sellwindow_domain::*;
use sellwindow_workflows::machine::*;
use std::collections::BTreeMap;

const PRICE: i64 = 100;

fn spec(min: u32, max: u32, limit: Option<u32>, policy: MinPaidPolicy) -> ListingSpec {
    ListingSpec {
        sell_window_id: SellWindowId::parse("sw-1").unwrap(),
        sell_window_name: "w".into(),
        product_id: ProductId::parse("p-1").unwrap(),
        product_name: "mug".into(),
        unit_price: Money::new(Currency::parse("TWD").unwrap(), PRICE).unwrap(),
        min_qty: min,
        max_qty: max,
        close_at: UnixMillis(1_000_000),
        payment_window_ms: 10_000,
        per_customer_limit: limit,
        min_paid_policy: policy,
        work_steps: vec!["a".into(), "b".into()],
    }
}

#[derive(Debug, Clone)]
struct Order {
    customer: CustomerId,
    qty: Qty,
    status: OrderStatus,
    due: Option<UnixMillis>,
}

#[derive(Debug, Clone)]
struct Attempt {
    order: OrderId,
    status: PaymentStatus,
    charged: u32,
    refunded: u32,
}

/// The store as the activities keep it, changed only through the order rules.
#[derive(Debug, Default)]
struct Store {
    orders: BTreeMap<OrderId, Order>,
    attempts: BTreeMap<PaymentId, Attempt>,
    /// The fences the workflow writes in the row: its phase, and closed (no reservation and
    /// no payment from then on).
    phase: Option<Phase>,
    closed: bool,
    version: u64,
    threshold_reached: bool,
    /// The figures as the quota row and the counter hold them, moved by deltas.
    counted: Delta,
    /// Orders written once the row was closed (must stay none).
    after_close: u32,
}

impl Store {
    fn payments_open(&self) -> bool {
        !self.closed
    }

    /// The row as a writer finds it under the lock.
    fn row(&self) -> QuotaRow {
        let u = |v: i64| u32::try_from(v).expect("a counter never goes below zero");
        QuotaRow {
            phase: self.phase.unwrap_or(Phase::Open),
            closed: self.closed,
            sold: u(self.counted.sold),
            reserved: u(self.counted.reserved),
            threshold_reached: self.threshold_reached,
        }
    }

    /// The figures a write answers with, at the next version.
    fn figures(&mut self) -> Figures {
        self.version += 1;
        let c = self.counted;
        let u = |v: i64| u32::try_from(v).expect("a counter never goes below zero");
        Figures {
            version: self.version,
            sold: u(c.sold),
            reserved: u(c.reserved),
            paid: u(c.paid),
            threshold_reached: self.threshold_reached,
        }
    }

    fn attempts_of(&self, order: &OrderId) -> Vec<PaymentId> {
        let mut ids: Vec<(u32, PaymentId)> = (1..=8)
            .map(|n| (n, PaymentId::for_attempt(order, n)))
            .filter(|(_, id)| self.attempts.contains_key(id))
            .collect();
        ids.sort();
        ids.into_iter().map(|(_, id)| id).collect()
    }

    fn open_attempt(&mut self, order: &OrderId) -> PaymentId {
        let n = self.attempts_of(order).len() as u32 + 1;
        let id = PaymentId::for_attempt(order, n);
        self.attempts.insert(
            id.clone(),
            Attempt {
                order: order.clone(),
                status: PaymentStatus::Init,
                charged: 0,
                refunded: 0,
            },
        );
        id
    }

    fn close_open_attempts(&mut self, order: &OrderId) {
        for id in self.attempts_of(order) {
            let a = self.attempts.get_mut(&id).unwrap();
            if a.status == PaymentStatus::Init && a.charged == 0 {
                a.status = PaymentStatus::Expired;
            }
        }
    }

    fn refund_charged(&mut self, order: &OrderId) {
        for id in self.attempts_of(order) {
            let a = self.attempts.get_mut(&id).unwrap();
            if a.charged > a.refunded {
                a.refunded += 1;
                a.status = PaymentStatus::Refunded;
            }
        }
    }

    /// Moves an order as a rule says.
    fn apply_move(&mut self, id: &OrderId, mv: Move, due: Option<UnixMillis>) {
        let o = self.orders.get(id).unwrap().clone();
        if mv.refund {
            self.refund_charged(id);
        }
        if mv.open_payment {
            self.open_attempt(id);
        } else if mv.to != o.status && !mv.to.holds_quota() {
            self.close_open_attempts(id);
        }
        let order = self.orders.get_mut(id).unwrap();
        order.status = mv.to;
        if mv.open_payment {
            order.due = due;
        }
        self.counted += Delta::of_move(Some(o.status), mv.to, o.qty);
    }

    /// One provider outcome, as the payments write applies it.
    fn outcome(&mut self, payment: &PaymentId, outcome: PaymentOutcome) {
        let Some(a) = self.attempts.get(payment).cloned() else {
            return;
        };
        let o = self.orders[&a.order].clone();
        let facts = OrderFacts {
            status: o.status,
            qty: o.qty,
        };
        let attempt = AttemptFacts {
            status: a.status,
            charged: a.charged > 0,
        };
        match on_payment(&facts, &attempt, outcome, self.payments_open()) {
            OnPayment::Ignore => {}
            OnPayment::Pay => {
                let paying = self.attempts.get_mut(payment).unwrap();
                paying.charged += 1;
                paying.status = PaymentStatus::Succeeded;
                self.close_open_attempts(&a.order);
                self.orders.get_mut(&a.order).unwrap().status = OrderStatus::Paid;
                self.counted += Delta::of_move(Some(o.status), OrderStatus::Paid, o.qty);
            }
            OnPayment::Refund(_) => {
                let a = self.attempts.get_mut(payment).unwrap();
                a.charged += 1;
                a.refunded += 1;
                a.status = PaymentStatus::Refunded;
            }
            OnPayment::Fail => {
                self.attempts.get_mut(payment).unwrap().status = PaymentStatus::Failed;
            }
            OnPayment::Expire => {
                self.attempts.get_mut(payment).unwrap().status = PaymentStatus::Expired;
                let order = a.order.clone();
                self.close_open_attempts(&order);
                self.orders.get_mut(&order).unwrap().status = OrderStatus::Expired;
                self.counted += Delta::of_move(Some(o.status), OrderStatus::Expired, o.qty);
            }
        }
    }

    /// The next order a sweep moves after `after` (by id), as its chunks find them.
    fn next_candidate(
        &self,
        kind: SweepKind,
        due: Option<UnixMillis>,
        after: &Option<OrderId>,
    ) -> Option<OrderId> {
        self.orders
            .iter()
            .filter(|(id, _)| after.as_ref().is_none_or(|a| *id > a))
            .filter(|(_, o)| kind.from().contains(&o.status))
            .find(|(_, o)| kind != SweepKind::Deadline || o.due.is_some_and(|d| Some(d) <= due))
            .map(|(id, _)| id.clone())
    }

    fn books_balance(&self) -> Result<(), String> {
        for (id, o) in &self.orders {
            let (mut charged, mut refunded) = (0i64, 0i64);
            for p in self.attempts_of(id) {
                let a = &self.attempts[&p];
                if a.refunded > a.charged || a.charged > 1 || a.refunded > 1 {
                    return Err(format!(
                        "attempt {p}: charged {} refunded {}",
                        a.charged, a.refunded
                    ));
                }
                charged += i64::from(a.charged);
                refunded += i64::from(a.refunded);
            }
            let amount = PRICE * i64::from(o.qty.get());
            let kept = if o.status == OrderStatus::Paid {
                amount
            } else {
                0
            };
            if (charged - refunded) * amount != kept {
                return Err(format!(
                    "order {id} ({}): charged {charged} - refunded {refunded} attempts, kept should be {kept}",
                    o.status
                ));
            }
        }
        Ok(())
    }

    /// The row equals the sums over the orders holding quota, and never passes its cap.
    fn row_agrees(&self, max: u32) -> Result<(), String> {
        let row = self.row();
        let held = self.sum(OrderStatus::holds_quota);
        if row.sold != held
            || row.sold > max
            || row.reserved != self.sum(OrderStatus::counts_as_reserved)
        {
            return Err(format!(
                "row sold {} reserved {} of {max} vs orders {held}",
                row.sold, row.reserved
            ));
        }
        if self.after_close > 0 {
            return Err(format!(
                "{} orders reserved past the close fence",
                self.after_close
            ));
        }
        Ok(())
    }

    fn sum(&self, f: fn(OrderStatus) -> bool) -> u32 {
        self.orders
            .values()
            .filter(|o| f(o.status))
            .map(|o| o.qty.get())
            .sum()
    }

    fn figures_agree(&self, l: &Listing) -> Result<(), String> {
        let sum = |f: fn(OrderStatus) -> bool| -> u32 {
            self.orders
                .values()
                .filter(|o| f(o.status))
                .map(|o| o.qty.get())
                .sum()
        };
        let (sold, reserved, paid) = (
            sum(OrderStatus::holds_quota),
            sum(OrderStatus::counts_as_reserved),
            sum(|s| s == OrderStatus::Paid),
        );
        if (l.sold_qty, l.reserved_qty, l.paid_qty) != (sold, reserved, paid) {
            return Err(format!(
                "listing (sold {}, reserved {}, paid {}) vs orders ({sold}, {reserved}, {paid})",
                l.sold_qty, l.reserved_qty, l.paid_qty
            ));
        }
        l.check_invariants()
    }
}

#[derive(Debug, Clone)]
enum Op {
    Reserve {
        key: u8,
        customer: u8,
        qty: u32,
    },
    /// A progress signal reaches the listing (any pending one: they arrive in any order), and
    /// may stay pending to arrive again.
    Deliver {
        which: u8,
        again: bool,
    },
    /// A progress signal is lost.
    Lose {
        which: u8,
    },
    Confirm,
    Outcome {
        order: u8,
        attempt: u8,
        outcome: u8,
    },
    Retry {
        order: u8,
    },
    CustomerCancel {
        order: u8,
        customer: u8,
    },
    Tick(i64),
    AdminCancel,
    Close,
    /// The write queue writes the next order of the sweep in progress.
    Advance,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u8..8, 0u8..3, 1u32..4).prop_map(|(key, customer, qty)| Op::Reserve { key, customer, qty }),
        3 => (any::<u8>(), prop::bool::weighted(0.2)).prop_map(|(which, again)| Op::Deliver { which, again }),
        1 => any::<u8>().prop_map(|which| Op::Lose { which }),
        1 => Just(Op::Confirm),
        6 => (0u8..8, 0u8..3, 0u8..3).prop_map(|(order, attempt, outcome)| Op::Outcome { order, attempt, outcome }),
        2 => (0u8..8).prop_map(|order| Op::Retry { order }),
        1 => (0u8..8, 0u8..3).prop_map(|(order, customer)| Op::CustomerCancel { order, customer }),
        2 => (1i64..15_000).prop_map(Op::Tick),
        1 => Just(Op::AdminCancel),
        1 => Just(Op::Close),
        6 => Just(Op::Advance),
    ]
}

fn order_id(key: u8, customer: u8) -> OrderId {
    OrderId::for_request(
        &SellWindowId::parse("sw-1").unwrap(),
        &ProductId::parse("p-1").unwrap(),
        &CustomerId::parse(format!("c{customer}")).unwrap(),
        &format!("k{key}"),
    )
}

/// The n-th order of the store (any of them, to hit every status).
fn nth_order(store: &Store, n: u8) -> Option<OrderId> {
    let len = store.orders.len();
    (len > 0).then(|| store.orders.keys().nth(n as usize % len).unwrap().clone())
}

/// A reservation, as the API's reserve transaction makes it: decided by the quota rules on the
/// row, written with its first payment after confirm, and told to the listing by a progress
/// signal that is sent, not yet delivered.
fn reserve(
    store: &mut Store,
    l: &Listing,
    signals: &mut Vec<Progress>,
    request: Request,
    now: UnixMillis,
) {
    if store.orders.contains_key(&request.order_id) {
        return; // a retry under the same key finds its first answer
    }
    let held: BTreeMap<CustomerId, u32> = store
        .orders
        .values()
        .filter(|o| o.status.holds_quota())
        .fold(BTreeMap::new(), |mut m, o| {
            *m.entry(o.customer.clone()).or_default() += o.qty.get();
            m
        });
    let decided = quota::reserve(&l.terms(), &store.row(), &[request], &held, now);
    let Some(o) = decided.taken().next().cloned() else {
        return;
    };
    if store.closed {
        store.after_close += 1;
    }
    store.orders.insert(
        o.order_id.clone(),
        Order {
            customer: o.customer_id.clone(),
            qty: o.qty,
            status: o.status,
            due: o.payment_due_at,
        },
    );
    if o.status == OrderStatus::PaymentRequested {
        store.open_attempt(&o.order_id);
    }
    store.counted += Delta::of_move(None, o.status, o.qty);
    store.threshold_reached = decided.row.threshold_reached;
    let figures = store.figures();
    signals.push(Progress {
        figures,
        next_due: o.payment_due_at,
    });
}

/// Writes queued in the ordered lane after a decision: sweeps a chunk (here, an order) at a
/// time, with everything else the lane writes in between, and close's decision once its
/// sweep is done.
#[derive(Debug, Clone)]
enum Stage {
    Sweep {
        kind: SweepKind,
        due: Option<UnixMillis>,
        after: Option<OrderId>,
    },
    DecideFinal,
}

#[derive(Debug, Default)]
struct Lane(std::collections::VecDeque<Stage>);

impl Lane {
    fn sweep(&mut self, kind: SweepKind, due: Option<UnixMillis>) {
        self.0.push_back(Stage::Sweep {
            kind,
            due,
            after: None,
        });
    }

    /// Writes the next step; returns whether there was one.
    fn advance(&mut self, store: &mut Store, l: &mut Listing) -> bool {
        let Some(stage) = self.0.front_mut() else {
            return false;
        };
        match stage {
            Stage::Sweep { kind, due, after } => match store.next_candidate(*kind, *due, after) {
                None => {
                    self.0.pop_front();
                }
                Some(id) => {
                    let mv = kind
                        .moves(store.orders[&id].status)
                        .expect("a candidate moves");
                    if !mv.ship {
                        store.apply_move(&id, mv, *due);
                        l.adopt(&store.figures());
                    }
                    *after = Some(id);
                }
            },
            Stage::DecideFinal => {
                self.0.pop_front();
                if l.decide_final() == FinalOutcome::CancelAndRefund {
                    self.0.push_front(Stage::Sweep {
                        kind: SweepKind::PaidUnderThreshold,
                        due: None,
                        after: None,
                    });
                }
            }
        }
        true
    }

    fn drain(&mut self, store: &mut Store, l: &mut Listing) {
        while self.advance(store, l) {}
    }
}

/// The store, the listing's workflow, its write queue, the clock and the signals on their way.
struct World {
    store: Store,
    l: Listing,
    lane: Lane,
    now: UnixMillis,
    signals: Vec<Progress>,
}

impl World {
    fn new(spec: ListingSpec) -> Self {
        Self {
            store: Store::default(),
            l: Listing::new(spec),
            lane: Lane::default(),
            now: UnixMillis(0),
            signals: Vec::new(),
        }
    }

    /// Every signal still on its way arrives, and the listing reads its row: it is quiet.
    fn quiet(&mut self) {
        for p in std::mem::take(&mut self.signals) {
            deliver(&mut self.l, &p);
        }
        self.lane.drain(&mut self.store, &mut self.l);
        let f = self.store.figures();
        self.l.adopt(&f);
    }

    fn check(&self, op: &Op) -> Result<(), TestCaseError> {
        let fail = |e: String| TestCaseError::fail(format!("after {op:?}: {e}"));
        self.store.row_agrees(self.l.spec.max_qty).map_err(fail)?;
        self.l.check_invariants().map_err(fail)?;
        self.store.books_balance().map_err(fail)
    }
}

/// A progress signal arrives: the listing adopts its figures if they are newer.
fn deliver(l: &mut Listing, p: &Progress) {
    l.adopt(&p.figures);
    if let Some(due) = p.next_due {
        l.expect_deadline(due);
    }
}

fn step(w: &mut World, op: Op) {
    let World {
        store,
        l,
        lane,
        now,
        signals,
    } = w;
    match op {
        Op::Reserve { key, customer, qty } => {
            let request = Request {
                order_id: order_id(key, customer),
                customer_id: CustomerId::parse(format!("c{customer}")).unwrap(),
                qty: Qty::new(qty).unwrap(),
            };
            reserve(store, l, signals, request, *now);
        }
        Op::Deliver { which, again } => {
            if signals.is_empty() {
                return;
            }
            let n = which as usize % signals.len();
            let p = if again {
                signals[n].clone()
            } else {
                signals.remove(n)
            };
            deliver(l, &p);
        }
        Op::Lose { which } => {
            if !signals.is_empty() {
                let n = which as usize % signals.len();
                signals.remove(n);
            }
        }
        Op::Confirm => {
            if l.confirm_refusal().is_some() || l.batch_status == BatchStatus::Confirmed {
                return;
            }
            // The fence: the row's own figures decide.
            let row = store.row();
            let checked = confirm_check(&row, l.spec.min_qty);
            let f = store.figures();
            l.adopt(&f);
            if checked.is_ok() {
                store.phase = Some(Phase::Confirmed);
                let due = l.terms().payment_due(*now);
                l.confirmed(*now, due);
                lane.sweep(SweepKind::Confirm, Some(due));
            }
        }
        Op::Outcome {
            order,
            attempt,
            outcome,
        } => {
            let Some(id) = nth_order(store, order) else {
                return;
            };
            let payment = PaymentId::for_attempt(&id, u32::from(attempt) + 1);
            let outcome = [
                PaymentOutcome::Succeeded,
                PaymentOutcome::Failed,
                PaymentOutcome::Expired,
            ][outcome as usize];
            store.outcome(&payment, outcome);
            l.adopt(&store.figures());
        }
        Op::Retry { order } => {
            let Some(id) = nth_order(store, order) else {
                return;
            };
            let open = store.attempts_of(&id).iter().any(|p| {
                let a = &store.attempts[p];
                a.status == PaymentStatus::Init && a.charged == 0
            });
            if store.orders[&id].status == OrderStatus::PaymentRequested
                && !open
                && l.takes_reservations()
            {
                store.open_attempt(&id);
            }
        }
        Op::CustomerCancel { order, customer } => {
            let Some(id) = nth_order(store, order) else {
                return;
            };
            if !l.takes_reservations()
                || store.orders[&id].customer.as_str() != format!("c{customer}")
            {
                return;
            }
            if let Ok(mv) = customer_cancel(store.orders[&id].status) {
                store.apply_move(&id, mv, None);
                l.adopt(&store.figures());
            }
        }
        Op::Tick(ms) => {
            *now = now.plus_ms(ms);
            if l.batch_status == BatchStatus::Confirmed
                && !l.closing
                && l.phase.accepts_reservations()
            {
                lane.sweep(SweepKind::Deadline, Some(*now));
            }
        }
        Op::AdminCancel => {
            if l.cancel_window().is_ok() {
                store.closed = true;
                lane.sweep(SweepKind::WindowCancelled, None);
            }
        }
        Op::Close => {
            // A confirm still asking its orders to pay finishes first.
            if l.phase.is_final() || l.closing || !lane.0.is_empty() {
                return;
            }
            store.closed = true;
            match l.close() {
                Closing::Unformed => lane.sweep(SweepKind::Unformed, None),
                Closing::Confirmed => {
                    lane.sweep(SweepKind::UnpaidAtClose, None);
                    lane.0.push_back(Stage::DecideFinal);
                }
            }
        }
        Op::Advance => {
            lane.advance(store, l);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn the_books_balance_and_the_figures_agree_under_any_interleaving(
        ops in proptest::collection::vec(op(), 1..90),
        min in 1u32..5,
        extra in 0u32..8,
        limit in proptest::option::of(1u32..5),
        refund_under_threshold in any::<bool>(),
    ) {
        let policy = if refund_under_threshold { MinPaidPolicy::CancelAndRefund } else { MinPaidPolicy::ProduceWhatWasPaid };
        let mut w = World::new(spec(min, min + extra, limit, policy));
        // Once the listing stops taking payments, the paid quantity never grows.
        let mut paid_when_closed: Option<u32> = None;
        for op in ops {
            step(&mut w, op.clone());
            if w.store.closed {
                let paid = w.store.row().sold - w.store.row().reserved;
                let frozen = *paid_when_closed.get_or_insert(paid);
                prop_assert!(paid <= frozen, "paid {} after closing at {} ({:?})", paid, frozen, op);
            }
            w.check(&op)?;
        }
        // Quiet (every signal delivered, every write done), the listing equals its row.
        w.quiet();
        w.store.figures_agree(&w.l).map_err(TestCaseError::fail)?;
        // Whatever came before, closing ends with every order settled and the books balanced.
        step(&mut w, Op::Close);
        w.quiet();
        w.store.figures_agree(&w.l).map_err(TestCaseError::fail)?;
        w.check(&Op::Close)?;
        prop_assert_eq!(w.l.reserved_qty, 0);
        // A late success for any attempt after close is refunded, never counted.
        let paid_before = w.l.paid_qty;
        let ids: Vec<PaymentId> = w.store.attempts.keys().cloned().collect();
        for p in ids {
            w.store.outcome(&p, PaymentOutcome::Succeeded);
            let f = w.store.figures();
            w.l.adopt(&f);
        }
        prop_assert_eq!(w.l.paid_qty, paid_before);
        w.store.books_balance().map_err(TestCaseError::fail)?;
    }
}

#[test]
fn a_failed_then_succeeded_attempt_pays_and_a_cancel_refunds_exactly_it() {
    let mut w = World::new(spec(1, 5, None, MinPaidPolicy::ProduceWhatWasPaid));
    step(
        &mut w,
        Op::Reserve {
            key: 0,
            customer: 0,
            qty: 1,
        },
    );
    step(&mut w, Op::Confirm);
    assert_eq!(
        w.l.batch_status,
        BatchStatus::Confirmed,
        "the row reached the threshold"
    );
    w.quiet();
    let order = order_id(0, 0);
    let (first, second) = (
        PaymentId::for_attempt(&order, 1),
        PaymentId::for_attempt(&order, 2),
    );
    w.store.outcome(&first, PaymentOutcome::Failed);
    w.store.open_attempt(&order); // the customer retries
    w.store.outcome(&first, PaymentOutcome::Succeeded); // attempt 1's late success
    assert_eq!(w.store.orders[&order].status, OrderStatus::Paid);
    step(&mut w, Op::AdminCancel);
    w.quiet();
    assert_eq!(w.store.attempts[&first].status, PaymentStatus::Refunded);
    assert_eq!(w.store.attempts[&second].status, PaymentStatus::Expired);
    w.store.outcome(&second, PaymentOutcome::Succeeded); // charged after the cancel
    assert_eq!(w.store.attempts[&second].status, PaymentStatus::Refunded);
    w.quiet();
    w.store.books_balance().unwrap();
    w.store.figures_agree(&w.l).unwrap();
}

#[test]
fn a_confirm_the_workflow_thinks_early_is_decided_by_the_row_and_lost_signals_are_made_good() {
    let mut w = World::new(spec(2, 5, None, MinPaidPolicy::ProduceWhatWasPaid));
    step(
        &mut w,
        Op::Reserve {
            key: 0,
            customer: 0,
            qty: 1,
        },
    );
    step(
        &mut w,
        Op::Reserve {
            key: 1,
            customer: 1,
            qty: 1,
        },
    );
    // Every progress signal is lost: the listing still thinks nothing is reserved.
    step(&mut w, Op::Lose { which: 0 });
    step(&mut w, Op::Lose { which: 0 });
    assert_eq!(w.l.reserved_qty, 0);
    // The fence reads the row: the threshold is reached there, so confirm goes ahead.
    step(&mut w, Op::Confirm);
    assert_eq!(w.l.batch_status, BatchStatus::Confirmed);
    assert_eq!(
        w.l.reserved_qty, 2,
        "the fence's answer brought the row's figures"
    );
    // A reservation after the fence is asked to pay at once.
    step(
        &mut w,
        Op::Reserve {
            key: 2,
            customer: 2,
            qty: 1,
        },
    );
    let late = order_id(2, 2);
    assert_eq!(w.store.orders[&late].status, OrderStatus::PaymentRequested);
    w.quiet();
    w.store.figures_agree(&w.l).unwrap();
}
