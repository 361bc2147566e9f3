//! Each reservation's answer, from what the listing decided at once and what its write did.

use super::contract::Recording;
use crate::machine::Decided;
use sellwindow_domain::*;

/// The answers to a batch of reservations, in order. `recorded` holds the write's recording of
/// each order taken (in order), or why the write failed.
pub fn answers(
    items: &[ReserveItem],
    decided: &[Decided],
    recorded: Result<Vec<Recording>, String>,
    phase: Phase,
) -> Vec<ReserveOutcome> {
    let mut recordings = match &recorded {
        Ok(r) => r.iter(),
        Err(_) => [].iter(),
    };
    let mut out: Vec<ReserveOutcome> = Vec::with_capacity(items.len());
    for (item, decision) in items.iter().zip(decided) {
        let refused = |refusal| ReserveOutcome::Refused {
            order_id: item.order_id.clone(),
            refusal,
        };
        let outcome = match decision {
            Decided::SameAs(first) => out[*first].clone(),
            Decided::Refused(r) => refused(r.clone()),
            Decided::Taken(order) => match (&recorded, recordings.next()) {
                (Err(why), _) => refused(Refusal::NotRecorded {
                    reason: why.clone(),
                }),
                (Ok(_), Some(Recording::New { payment_id })) => {
                    ReserveOutcome::Reserved(OrderView {
                        order_id: order.order_id.clone(),
                        customer_id: order.customer_id.clone(),
                        qty: order.qty,
                        amount: order.amount.clone(),
                        status: order.status,
                        payment_due_at: order.payment_due_at,
                        payment_id: payment_id.clone(),
                    })
                }
                (Ok(_), Some(Recording::Existing(view))) => ReserveOutcome::Reserved(view.clone()),
                (Ok(_), Some(Recording::OverLimit { limit, held })) => {
                    refused(Refusal::CustomerLimit {
                        limit: *limit,
                        held: *held,
                    })
                }
                (Ok(_), Some(Recording::Closed)) => refused(Refusal::WindowClosed { phase }),
                (Ok(_), Some(Recording::Voided)) => refused(Refusal::NotRecorded {
                    reason: "the reservation was given up on".into(),
                }),
                (Ok(_), None) => refused(Refusal::NotRecorded {
                    reason: "the write answered for fewer orders than it was given".into(),
                }),
            },
        };
        out.push(outcome);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(n: u32) -> ReserveItem {
        ReserveItem {
            order_id: OrderId::parse(format!("o-{n}")).unwrap(),
            customer_id: CustomerId::parse("c").unwrap(),
            qty: Qty::new(1).unwrap(),
            answer_key: None,
        }
    }

    fn taken(n: u32) -> Decided {
        let i = item(n);
        Decided::Taken(NewOrder {
            order_id: i.order_id,
            customer_id: i.customer_id,
            qty: i.qty,
            amount: Money::new(Currency::parse("TWD").unwrap(), 100).unwrap(),
            status: OrderStatus::Reserved,
            payment_due_at: None,
        })
    }

    #[test]
    fn each_reservation_gets_the_answer_of_its_own_decision_and_recording() {
        let items = [item(1), item(2), item(1), item(3)];
        let decided = [
            taken(1),
            taken(2),
            Decided::SameAs(0),
            Decided::Refused(Refusal::NotEnoughQuota { available: 0 }),
        ];
        let recorded = Ok(vec![
            Recording::New { payment_id: None },
            Recording::OverLimit { limit: 1, held: 1 },
        ]);
        let out = answers(&items, &decided, recorded, Phase::Open);
        assert!(matches!(&out[0], ReserveOutcome::Reserved(v) if v.order_id == items[0].order_id));
        assert!(matches!(
            &out[1],
            ReserveOutcome::Refused {
                refusal: Refusal::CustomerLimit { limit: 1, held: 1 },
                ..
            }
        ));
        assert_eq!(out[2], out[0]);
        assert!(matches!(
            &out[3],
            ReserveOutcome::Refused {
                refusal: Refusal::NotEnoughQuota { available: 0 },
                ..
            }
        ));
        let failed = answers(&items[..1], &decided[..1], Err("down".into()), Phase::Open);
        assert!(matches!(
            &failed[0],
            ReserveOutcome::Refused {
                refusal: Refusal::NotRecorded { .. },
                ..
            }
        ));
    }
}
