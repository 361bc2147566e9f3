//! The listing's rules, driven without a server: the listing machine decides, a model of the
//! store applies the order rules to its orders and attempts (as the activities do to rows) and
//! moves its figures by each change's delta (as the activities move the quota row and the
//! counter), and the listing adopts the figures each write answers with. After every step the
//! quota is never oversold, the figures equal the sums over the orders, and the books
//! balance: per order, charged minus
//! refunded is its amount when it is PAID and zero otherwise, and only charged attempts are
//! refunded, each once. The interleavings include outcomes out of order for any attempt
//! (failed → succeeded, succeeded → failed, expired → succeeded, two attempts succeeding,
//! duplicates), retries, deadlines, customer and admin cancels, close under either policy, and
//! reservation writes that fail.

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
    payments_open: bool,
    version: u64,
    threshold_reached: bool,
    /// The figures as the quota row and the counter hold them, moved by deltas.
    counted: Delta,
}

impl Store {
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
        match on_payment(&facts, &attempt, outcome, self.payments_open) {
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
        write_fails: bool,
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
    /// The ordered lane writes the next order of the sweep in progress.
    Advance,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u8..8, 0u8..3, 1u32..4, prop::bool::weighted(0.1)).prop_map(|(key, customer, qty, write_fails)| Op::Reserve { key, customer, qty, write_fails }),
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

/// A reservation write, as the quota-locking activity does it.
fn record(store: &mut Store, l: &mut Listing, orders: &[NewOrder]) {
    let mut delta = Delta::default();
    let limit = l.spec.per_customer_limit;
    for o in orders {
        if store.orders.contains_key(&o.order_id) {
            continue; // written before: answered as it is
        }
        if let Some(limit) = limit {
            let held: u32 = store
                .orders
                .values()
                .filter(|x| x.customer == o.customer_id && x.status.holds_quota())
                .map(|x| x.qty.get())
                .sum();
            if held + o.qty.get() > limit {
                continue;
            }
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
        delta += Delta::of_move(None, o.status, o.qty);
    }
    store.counted += delta;
    let reserved: u32 = store
        .orders
        .values()
        .filter(|o| o.status.counts_as_reserved())
        .map(|o| o.qty.get())
        .sum();
    store.threshold_reached |= reserved >= l.spec.min_qty;
    let figures = store.figures();
    l.recorded(orders, &figures);
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

fn step(store: &mut Store, l: &mut Listing, lane: &mut Lane, now: &mut UnixMillis, op: Op) {
    match op {
        Op::Reserve {
            key,
            customer,
            qty,
            write_fails,
        } => {
            let item = ReserveItem {
                order_id: order_id(key, customer),
                customer_id: CustomerId::parse(format!("c{customer}")).unwrap(),
                qty: Qty::new(qty).unwrap(),
                answer_key: None,
            };
            let taken: Vec<NewOrder> = l
                .reserve(&[item], *now)
                .into_iter()
                .filter_map(|d| match d {
                    Decided::Taken(o) => Some(o),
                    _ => None,
                })
                .collect();
            if write_fails {
                l.release_held(&taken); // given up on and voided: nothing stays
            } else {
                record(store, l, &taken);
            }
        }
        Op::Confirm => {
            if let Ok(Some(due)) = l.confirm(*now) {
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
                store.payments_open = false;
                lane.sweep(SweepKind::WindowCancelled, None);
            }
        }
        Op::Close => {
            // A confirm still asking its orders to pay finishes first.
            if l.phase.is_final() || l.closing || !lane.0.is_empty() {
                return;
            }
            store.payments_open = false;
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
        let mut l = Listing::new(spec(min, min + extra, limit, policy));
        let mut store = Store { payments_open: true, ..Store::default() };
        let mut lane = Lane::default();
        let mut now = UnixMillis(0);
        // Once the listing stops taking payments, the paid quantity never grows.
        let mut paid_when_closed: Option<u32> = None;
        for op in ops {
            step(&mut store, &mut l, &mut lane, &mut now, op.clone());
            prop_assert_eq!(l.held_qty, 0, "after {:?}", op);
            if !store.payments_open {
                let frozen = *paid_when_closed.get_or_insert(l.paid_qty);
                prop_assert!(l.paid_qty <= frozen, "paid {} after closing at {} ({:?})", l.paid_qty, frozen, op);
            }
            store.figures_agree(&l).map_err(|e| TestCaseError::fail(format!("after {op:?}: {e}")))?;
            store.books_balance().map_err(|e| TestCaseError::fail(format!("after {op:?}: {e}")))?;
        }
        // Whatever came before, closing ends with every order settled and the books balanced.
        lane.drain(&mut store, &mut l);
        step(&mut store, &mut l, &mut lane, &mut now, Op::Close);
        lane.drain(&mut store, &mut l);
        store.figures_agree(&l).map_err(TestCaseError::fail)?;
        store.books_balance().map_err(TestCaseError::fail)?;
        prop_assert_eq!(l.reserved_qty, 0);
        // A late success for any attempt after close is refunded, never counted.
        let paid_before = l.paid_qty;
        let ids: Vec<PaymentId> = store.attempts.keys().cloned().collect();
        for p in ids {
            store.outcome(&p, PaymentOutcome::Succeeded);
            l.adopt(&store.figures());
        }
        prop_assert_eq!(l.paid_qty, paid_before);
        store.books_balance().map_err(TestCaseError::fail)?;
    }
}

#[test]
fn a_failed_then_succeeded_attempt_pays_and_a_cancel_refunds_exactly_it() {
    let mut l = Listing::new(spec(1, 5, None, MinPaidPolicy::ProduceWhatWasPaid));
    let mut store = Store {
        payments_open: true,
        ..Store::default()
    };
    let mut lane = Lane::default();
    let mut now = UnixMillis(0);
    step(
        &mut store,
        &mut l,
        &mut lane,
        &mut now,
        Op::Reserve {
            key: 0,
            customer: 0,
            qty: 1,
            write_fails: false,
        },
    );
    step(&mut store, &mut l, &mut lane, &mut now, Op::Confirm);
    lane.drain(&mut store, &mut l);
    let order = order_id(0, 0);
    let (first, second) = (
        PaymentId::for_attempt(&order, 1),
        PaymentId::for_attempt(&order, 2),
    );
    store.outcome(&first, PaymentOutcome::Failed);
    l.adopt(&store.figures());
    store.open_attempt(&order); // the customer retries
    store.outcome(&first, PaymentOutcome::Succeeded); // attempt 1's late success
    l.adopt(&store.figures());
    assert_eq!(store.orders[&order].status, OrderStatus::Paid);
    step(&mut store, &mut l, &mut lane, &mut now, Op::AdminCancel);
    lane.drain(&mut store, &mut l);
    assert_eq!(store.attempts[&first].status, PaymentStatus::Refunded);
    assert_eq!(store.attempts[&second].status, PaymentStatus::Expired);
    store.outcome(&second, PaymentOutcome::Succeeded); // charged after the cancel
    l.adopt(&store.figures());
    assert_eq!(store.attempts[&second].status, PaymentStatus::Refunded);
    store.books_balance().unwrap();
    store.figures_agree(&l).unwrap();
}
