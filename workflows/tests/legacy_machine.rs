//! The first shape's business rules (kept for the listings that run on it), driven without a server.

use proptest::prelude::*;
use sellwindow_domain::*;
use sellwindow_workflows::legacy::machine::*;

fn spec(min: u32, max: u32, limit: Option<u32>, policy: MinPaidPolicy) -> ListingSpec {
    ListingSpec {
        sell_window_id: SellWindowId::parse("sw-1").unwrap(),
        sell_window_name: "w".into(),
        product_id: ProductId::parse("p-1").unwrap(),
        product_name: "mug".into(),
        unit_price: Money::new(Currency::parse("TWD").unwrap(), 100).unwrap(),
        min_qty: min,
        max_qty: max,
        close_at: UnixMillis(1_000_000),
        payment_window_ms: 10_000,
        per_customer_limit: limit,
        min_paid_policy: policy,
        work_steps: vec!["a".into(), "b".into()],
    }
}

fn item(n: u32, customer: &str, qty: u32) -> ReserveItem {
    ReserveItem {
        order_id: OrderId::parse(format!("o-{n}")).unwrap(),
        customer_id: CustomerId::parse(customer).unwrap(),
        qty: Qty::new(qty).unwrap(),
        answer_key: None,
    }
}

fn paid(l: &mut Listing, n: u32) -> PaymentEffect {
    let id = OrderId::parse(format!("o-{n}")).unwrap();
    let pay = l.orders[&id].payment.clone().unwrap().1;
    l.apply_payment(&PaymentResult {
        event_id: format!("e-{n}"),
        payment_id: pay,
        order_id: id,
        outcome: PaymentOutcome::Succeeded,
        error: None,
        occurred_at: UnixMillis(0),
    })
}

#[test]
fn reserve_beyond_cap_is_refused_and_never_oversells() {
    let mut l = Listing::new(spec(2, 3, None, MinPaidPolicy::ProduceWhatWasPaid));
    let plan = l.reserve(
        &[item(1, "a", 2), item(2, "b", 2), item(3, "c", 1)],
        UnixMillis(0),
    );
    assert_eq!(plan.accepted.len(), 2);
    assert!(matches!(
        plan.outcomes[1],
        ReserveOutcome::Refused {
            refusal: Refusal::NotEnoughQuota { available: 1 },
            ..
        }
    ));
    assert!(plan.quota_closed && plan.threshold_reached);
    assert_eq!((l.sold_qty, l.quota_status), (3, QuotaStatus::Closed));
    l.check_invariants().unwrap();
}

#[test]
fn a_retried_reservation_returns_the_first_answer() {
    let mut l = Listing::new(spec(5, 5, None, MinPaidPolicy::ProduceWhatWasPaid));
    l.reserve(&[item(1, "a", 2)], UnixMillis(0));
    let again = l.reserve(&[item(1, "a", 2)], UnixMillis(5));
    assert!(again.accepted.is_empty());
    assert!(matches!(&again.outcomes[0], ReserveOutcome::Reserved(v) if v.qty.get() == 2));
    assert_eq!(l.sold_qty, 2);
}

#[test]
fn undoing_a_failed_write_gives_the_units_back() {
    let mut l = Listing::new(spec(1, 2, None, MinPaidPolicy::ProduceWhatWasPaid));
    let mut plan = l.reserve(&[item(1, "a", 2)], UnixMillis(0));
    l.undo_reserve(&mut plan, "db down");
    assert_eq!(
        (
            l.sold_qty,
            l.reserved_qty,
            l.quota_status,
            l.threshold_status
        ),
        (0, 0, QuotaStatus::Open, ThresholdStatus::Open)
    );
    assert!(matches!(
        plan.outcomes[0],
        ReserveOutcome::Refused {
            refusal: Refusal::NotRecorded { .. },
            ..
        }
    ));
    l.check_invariants().unwrap();
}

#[test]
fn confirm_needs_the_threshold_and_a_second_confirm_changes_nothing() {
    let mut l = Listing::new(spec(2, 5, None, MinPaidPolicy::ProduceWhatWasPaid));
    l.reserve(&[item(1, "a", 1)], UnixMillis(0));
    assert!(l.confirm(UnixMillis(1)).is_err());
    l.reserve(&[item(2, "b", 1)], UnixMillis(2));
    assert_eq!(l.confirm(UnixMillis(3)).unwrap().len(), 2);
    assert!(l.confirm(UnixMillis(4)).unwrap().is_empty());
    let o = &l.orders[&OrderId::parse("o-1").unwrap()];
    assert_eq!(
        (o.status, o.payment_due_at),
        (OrderStatus::PaymentRequested, Some(UnixMillis(10_003)))
    );
}

#[test]
fn reserving_after_confirm_goes_straight_to_payment_requested_and_after_close_is_refused() {
    let mut l = Listing::new(spec(1, 5, None, MinPaidPolicy::ProduceWhatWasPaid));
    l.reserve(&[item(1, "a", 1)], UnixMillis(0));
    l.confirm(UnixMillis(1)).unwrap();
    let plan = l.reserve(&[item(2, "b", 1)], UnixMillis(995_000));
    // The deadline never passes close_at.
    assert_eq!(plan.accepted[0].status, OrderStatus::PaymentRequested);
    assert_eq!(plan.accepted[0].payment_due_at, Some(UnixMillis(1_000_000)));
    let late = l.reserve(&[item(3, "c", 1)], UnixMillis(1_000_000));
    assert!(matches!(
        late.outcomes[0],
        ReserveOutcome::Refused {
            refusal: Refusal::WindowClosed { .. },
            ..
        }
    ));
}

#[test]
fn the_main_flow_freezes_the_paid_quantity_and_schedules_production() {
    let mut l = Listing::new(spec(2, 5, None, MinPaidPolicy::ProduceWhatWasPaid));
    l.reserve(&[item(1, "a", 1), item(2, "b", 2)], UnixMillis(0));
    let moved = l.confirm(UnixMillis(1)).unwrap();
    assert_eq!(l.open_payments(&moved).len(), 2);
    assert!(matches!(paid(&mut l, 2), PaymentEffect::Paid { .. }));
    let plan = l.finalize(UnixMillis(1_000_000));
    let FinalizePlan::Finalized {
        expired,
        final_paid_qty,
        outcome: FinalOutcome::Produce { .. },
    } = plan
    else {
        panic!("expected production: {plan:?}");
    };
    assert_eq!((expired.len(), final_paid_qty), (1, 2));
    assert_eq!(l.phase, Phase::InProduction);
    let steps: Vec<StepId> = l.steps.iter().map(|(s, _)| s.clone()).collect();
    assert_eq!(l.complete_step(&steps[0]), Some(false));
    assert_eq!(l.complete_step(&steps[0]), None);
    assert_eq!(l.complete_step(&steps[1]), Some(true));
    assert_eq!(l.phase, Phase::Shipped);
    l.check_invariants().unwrap();
}

#[test]
fn a_window_never_confirmed_fails_and_cancels_every_order() {
    let mut l = Listing::new(spec(3, 5, None, MinPaidPolicy::ProduceWhatWasPaid));
    l.reserve(&[item(1, "a", 1)], UnixMillis(0));
    let FinalizePlan::Failed { cancelled } = l.finalize(UnixMillis(1_000_000)) else {
        panic!()
    };
    assert_eq!(cancelled.len(), 1);
    assert_eq!((l.phase, l.sold_qty), (Phase::Failed, 0));
    l.check_invariants().unwrap();
}

#[test]
fn a_payment_after_expiry_is_refunded_never_counted() {
    let mut l = Listing::new(spec(1, 1, None, MinPaidPolicy::ProduceWhatWasPaid));
    l.reserve(&[item(1, "a", 1)], UnixMillis(0));
    let moved = l.confirm(UnixMillis(1)).unwrap();
    let pay = l.open_payments(&moved)[0].payment_id.clone();
    let (released, reopened) = l.expire_due(UnixMillis(20_000));
    assert_eq!((released.len(), reopened), (1, true));
    let late = l.apply_payment(&PaymentResult {
        event_id: "e".into(),
        payment_id: pay,
        order_id: OrderId::parse("o-1").unwrap(),
        outcome: PaymentOutcome::Succeeded,
        error: None,
        occurred_at: UnixMillis(0),
    });
    assert!(matches!(late, PaymentEffect::Refund { .. }));
    assert_eq!(l.paid_qty, 0);
    l.check_invariants().unwrap();
}

#[test]
fn per_customer_limit_counts_the_customers_active_orders() {
    let mut l = Listing::new(spec(1, 10, Some(3), MinPaidPolicy::ProduceWhatWasPaid));
    let plan = l.reserve(
        &[
            item(1, "a", 2),
            item(2, "a", 2),
            item(3, "a", 1),
            item(4, "b", 3),
        ],
        UnixMillis(0),
    );
    assert_eq!(plan.accepted.len(), 3);
    assert!(matches!(
        plan.outcomes[1],
        ReserveOutcome::Refused {
            refusal: Refusal::CustomerLimit { limit: 3, held: 2 },
            ..
        }
    ));
}

#[test]
fn cancel_and_refund_policy_refunds_every_paid_order_under_the_threshold() {
    let mut l = Listing::new(spec(2, 5, None, MinPaidPolicy::CancelAndRefund));
    l.reserve(&[item(1, "a", 1), item(2, "b", 1)], UnixMillis(0));
    let moved = l.confirm(UnixMillis(1)).unwrap();
    l.open_payments(&moved);
    paid(&mut l, 1);
    let FinalizePlan::Finalized {
        outcome: FinalOutcome::CancelAndRefund { refunded },
        final_paid_qty,
        ..
    } = l.finalize(UnixMillis(1_000_000))
    else {
        panic!()
    };
    assert_eq!((refunded.len(), final_paid_qty), (1, 1));
    assert_eq!((l.phase, l.paid_qty, l.sold_qty), (Phase::Cancelled, 0, 0));
    l.check_invariants().unwrap();
}

#[derive(Debug, Clone)]
enum Op {
    Reserve(u32, u8, u32),
    Confirm,
    Pay(u32),
    Fail(u32),
    ProviderExpire(u32),
    Tick(i64),
    CustomerCancel(u32, u8),
    AdminCancel,
    Close,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u32..40, 0u8..5, 1u32..4).prop_map(|(n, c, q)| Op::Reserve(n, c, q)),
        1 => Just(Op::Confirm),
        3 => (0u32..40).prop_map(Op::Pay),
        1 => (0u32..40).prop_map(Op::Fail),
        1 => (0u32..40).prop_map(Op::ProviderExpire),
        1 => (1i64..30_000).prop_map(Op::Tick),
        1 => (0u32..40, 0u8..5).prop_map(|(n, c)| Op::CustomerCancel(n, c)),
        1 => Just(Op::AdminCancel),
        1 => Just(Op::Close),
    ]
}

proptest! {
    /// Random interleavings of reserve / confirm / pay / fail / expire / late success / close:
    /// the quota is never oversold and the counters always equal the sums over the orders.
    #[test]
    fn counters_agree_with_orders_under_any_interleaving(
        ops in proptest::collection::vec(op(), 1..80),
        min in 1u32..6,
        extra in 0u32..8,
        limit in proptest::option::of(1u32..6),
    ) {
        let mut l = Listing::new(spec(min, min + extra, limit, MinPaidPolicy::ProduceWhatWasPaid));
        let mut now = UnixMillis(0);
        for op in ops {
            match op {
                Op::Reserve(n, c, q) => {
                    let plan = l.reserve(&[item(n, &format!("c{c}"), q)], now);
                    if let Some(limit) = limit {
                        let held: u32 = l.orders.values()
                            .filter(|o| o.customer_id.as_str() == format!("c{c}") && o.status.holds_quota())
                            .map(|o| o.qty.get()).sum();
                        prop_assert!(plan.accepted.is_empty() || held <= limit);
                    }
                }
                Op::Confirm => {
                    if let Ok(moved) = l.confirm(now) { l.open_payments(&moved); }
                }
                Op::Pay(n) | Op::Fail(n) | Op::ProviderExpire(n) => {
                    let id = OrderId::parse(format!("o-{n}")).unwrap();
                    // Open a fresh attempt if the order has none (a retry after failure).
                    l.open_payments(std::slice::from_ref(&id));
                    let payment_id = l.orders.get(&id).and_then(|o| o.payment.clone()).map(|p| p.1)
                        .unwrap_or_else(|| PaymentId::for_attempt(&id, 1));
                    let outcome = match op { Op::Pay(_) => PaymentOutcome::Succeeded, Op::Fail(_) => PaymentOutcome::Failed, _ => PaymentOutcome::Expired };
                    l.apply_payment(&PaymentResult { event_id: "e".into(), payment_id, order_id: id, outcome, error: None, occurred_at: now });
                }
                Op::Tick(ms) => { now = now.plus_ms(ms); l.expire_due(now); }
                Op::CustomerCancel(n, c) => {
                    let id = OrderId::parse(format!("o-{n}")).unwrap();
                    let who = CustomerId::parse(format!("c{c}")).unwrap();
                    let before = l.orders.get(&id).map(|o| o.status);
                    let r = l.cancel_order(&id, &who);
                    // A paid order never goes back through the customer.
                    if before == Some(OrderStatus::Paid) { prop_assert!(r.is_err()); }
                }
                Op::AdminCancel => {
                    if l.cancel_window().is_ok() {
                        prop_assert_eq!((l.sold_qty, l.reserved_qty, l.paid_qty), (0, 0, 0));
                    }
                }
                Op::Close => { if !l.phase.is_final() && l.phase != Phase::InProduction { l.finalize(now); } }
            }
            prop_assert!(l.check_invariants().is_ok(), "{:?}", l.check_invariants());
        }
    }
}

#[test]
fn a_large_listing_hands_over_within_the_payload_limit_and_round_trips() {
    use sellwindow_workflows::ListingStart;
    let mut l = Listing::new(spec(1, 100_000, None, MinPaidPolicy::ProduceWhatWasPaid));
    let items: Vec<ReserveItem> = (0..20_000)
        .map(|n| ReserveItem {
            order_id: OrderId::derive(&["order", &n.to_string()]),
            customer_id: CustomerId::parse(format!("customer-{}", n % 5000)).unwrap(),
            qty: Qty::new(1 + n % 3).unwrap(),
            answer_key: None,
        })
        .collect();
    l.reserve(&items, UnixMillis(0));
    let moved = l.confirm(UnixMillis(1)).unwrap();
    l.open_payments(&moved);
    let start = ListingStart::carrying(&l);
    let size = serde_json::to_vec(&start).unwrap().len();
    assert!(size < 1_100_000, "20,000 orders hand over in {size} bytes");
    eprintln!("20,000 orders (with open payments) hand over in {size} bytes");
    assert_eq!(start.into_listing().unwrap(), l);
}

#[test]
fn a_listing_too_large_to_carry_hands_over_through_the_store_in_parts() {
    use sellwindow_workflows::ListingStart;
    use sellwindow_workflows::legacy::handover::{HANDOVER_PART_CHARS, INLINE_HANDOVER_MAX};
    // A small listing travels inline, as before.
    let mut small = Listing::new(spec(1, 1_000, None, MinPaidPolicy::ProduceWhatWasPaid));
    small.reserve(&reservations(0..100), UnixMillis(0));
    let (start, parts) = ListingStart::handing_over(&small, "run-1-0", None);
    assert!(parts.is_empty() && start.orders_in_store.is_none());
    assert_eq!(start.into_listing().unwrap(), small);

    // 120,000 orders with open payments are far past the server's 2 MB payload limit inline.
    let mut l = Listing::new(spec(1, 1_000_000, None, MinPaidPolicy::ProduceWhatWasPaid));
    l.reserve(&reservations(0..120_000), UnixMillis(0));
    let moved = l.confirm(UnixMillis(1)).unwrap();
    l.open_payments(&moved);
    let (start, parts) = ListingStart::handing_over(&l, "run-2-0", Some(777));
    let stored = start
        .orders_in_store
        .clone()
        .expect("orders go to the store");
    assert_eq!(
        (stored.parts as usize, stored.orders),
        (parts.len(), 120_000)
    );
    assert!(parts.len() > 1);
    assert!(parts.iter().all(|p| p.len() <= HANDOVER_PART_CHARS));
    let inline = serde_json::to_vec(&start).unwrap().len();
    assert!(
        inline < INLINE_HANDOVER_MAX,
        "the inline part is {inline} bytes"
    );
    assert_eq!(
        start.inline_max,
        Some(777),
        "the setting passes to the next run"
    );
    let mut back = start.into_listing().unwrap();
    assert!(back.orders.is_empty());
    back.orders = ListingStart::orders_from_parts(&stored, &parts).unwrap();
    assert_eq!(back, l);
    // A part lost or cut short is caught, never taken for a smaller listing.
    assert!(ListingStart::orders_from_parts(&stored, &parts[1..]).is_err());
    let fewer = sellwindow_workflows::legacy::handover::StoredOrders {
        orders: 119_999,
        ..stored
    };
    assert!(ListingStart::orders_from_parts(&fewer, &parts).is_err());
}

#[test]
fn a_hand_over_written_by_the_first_releases_still_reads_back() {
    use sellwindow_workflows::ListingStart;
    // They carried the whole listing, orders as a JSON map, gzip-compressed in `carried`.
    fn old_pack<T: serde::Serialize>(value: &T) -> String {
        use std::io::Write;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&serde_json::to_vec(value).unwrap()).unwrap();
        base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            gz.finish().unwrap(),
        )
    }
    let mut l = Listing::new(spec(1, 10_000, None, MinPaidPolicy::ProduceWhatWasPaid));
    l.reserve(&reservations(0..2_000), UnixMillis(0));
    let moved = l.confirm(UnixMillis(1)).unwrap();
    l.open_payments(&moved);
    let mut old = serde_json::to_value(ListingStart::from(l.spec.clone())).unwrap();
    old["carried"] = old_pack(&l).into();
    let start: ListingStart = serde_json::from_value(old).unwrap();
    assert_eq!(start.into_listing().unwrap(), l);
}

fn any_id(prefix: &'static str) -> impl Strategy<Value = String> {
    prop_oneof![
        // Minted by this system: the prefix and 24 hex digits.
        proptest::collection::vec(any::<u8>(), 12)
            .prop_map(move |b| format!("{prefix}{}", hex(&b))),
        // Given from outside (tests, older data): anything an id may be.
        "[a-zA-Z0-9][a-zA-Z0-9_.:-]{0,40}",
    ]
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn any_order() -> impl Strategy<Value = (String, OrderEntry)> {
    (
        any_id("ord-"),
        0u32..40,
        1u32..1_000_000,
        0usize..OrderStatus::ALL.len(),
        proptest::option::of(any::<i64>()),
        proptest::option::of((any::<u32>(), any_id("pay-"))),
        any::<u32>(),
        proptest::option::of(any_id("pay-")),
    )
        .prop_map(|(id, c, qty, st, due, payment, failures, paid_by)| {
            let entry = OrderEntry {
                customer_id: CustomerId::parse(format!("customer-{c}")).unwrap(),
                qty: Qty::new(qty).unwrap(),
                status: OrderStatus::ALL[st],
                payment_due_at: due.map(UnixMillis),
                payment: payment.map(|(a, p)| (a, PaymentId::parse(p).unwrap())),
                payment_failures: failures,
                paid_by: paid_by.map(|p| PaymentId::parse(p).unwrap()),
            };
            (id, entry)
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn packed_orders_read_back_exactly(orders in proptest::collection::vec(any_order(), 0..60)) {
        use sellwindow_workflows::legacy::order_codec::{decode, encode};
        let orders: std::collections::BTreeMap<OrderId, OrderEntry> = orders
            .into_iter()
            .map(|(id, o)| (OrderId::parse(id).unwrap(), o))
            .collect();
        prop_assert_eq!(decode(&encode(&orders)).unwrap(), orders);
    }

    #[test]
    fn damaged_packed_orders_are_refused_never_a_panic(
        orders in proptest::collection::vec(any_order(), 1..20),
        cut in any::<prop::sample::Index>(),
        flip in any::<prop::sample::Index>(),
        bits in 1u8..=255,
    ) {
        use sellwindow_workflows::legacy::order_codec::{decode, encode};
        let orders: std::collections::BTreeMap<OrderId, OrderEntry> = orders
            .into_iter()
            .map(|(id, o)| (OrderId::parse(id).unwrap(), o))
            .collect();
        let bytes = encode(&orders);
        // Cut short: always refused.
        prop_assert!(decode(&bytes[..cut.index(bytes.len())]).is_err());
        // A flipped byte: refused, or read as some other valid order list, but never a panic.
        let mut damaged = bytes.clone();
        let i = flip.index(damaged.len());
        damaged[i] ^= bits;
        let _ = decode(&damaged);
    }
}

#[test]
fn unpaid_orders_pack_into_about_eighteen_bytes_each() {
    let mut l = Listing::new(spec(1, 1_000_000, None, MinPaidPolicy::ProduceWhatWasPaid));
    l.reserve(&reservations(0..100_000), UnixMillis(0));
    let bytes = sellwindow_workflows::legacy::order_codec::encode(&l.orders);
    let per_order = bytes.len() as f64 / 100_000.0;
    assert!(per_order < 20.0, "{per_order:.1} bytes an order");
}

fn reservations(range: std::ops::Range<u32>) -> Vec<ReserveItem> {
    range
        .map(|n| ReserveItem {
            order_id: OrderId::derive(&["order", &n.to_string()]),
            customer_id: CustomerId::parse(format!("customer-{}", n % 5000)).unwrap(),
            qty: Qty::new(1).unwrap(),
            answer_key: None,
        })
        .collect()
}
