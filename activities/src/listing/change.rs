//! A customer's change to one of their orders, checked under the listing's lock against the
//! order as stored: it must exist in this listing, be theirs, and be in a status that allows
//! the change. Done again, it answers as the first time (a cancel finds the order cancelled
//! by its customer; a retry finds the attempt it opened).

use super::ListingActivities;
use sellwindow_domain::*;
use sellwindow_store::db::StoreError;
use sellwindow_store::effects::{Write, by_order};
use sellwindow_store::listing_tx::ListingTx;
use sellwindow_store::rows::{self, Changes};
use sellwindow_store::texts::Release;
use sellwindow_workflows::listing::contract::{ChangeOrder, OrderChange, OrderChanged};
use sellwindow_workflows::machine::customer_cancel;

impl ListingActivities {
    pub async fn change_order_tx(&self, w: &ChangeOrder) -> Result<OrderChanged, StoreError> {
        let mut u = ListingTx::begin(&self.store, &w.listing, w.at).await?;
        let mut locked = u.lock().await?;
        let id = &w.order.order_id;
        let mut orders = rows::orders_by_id(&mut u, &w.listing, &[id]).await?;
        let answer = match orders.get_mut(id) {
            None => OrderChanged::Refused(Refusal::UnknownOrder),
            Some(o) if o.customer_id != w.order.customer_id => {
                OrderChanged::Refused(Refusal::NotYours)
            }
            Some(order) => {
                let mut tried = by_order(rows::attempts_of(&mut u, &[id]).await?)
                    .remove(id)
                    .unwrap_or_default();
                let mut write = Write {
                    u,
                    changes: Changes::default(),
                    pay_base: &self.public_base_url,
                };
                let view = match w.change {
                    OrderChange::Cancel if cancelled_by_customer(order) => {
                        Ok(order.view(tried.last().map(|a| a.id.clone())))
                    }
                    OrderChange::Cancel => customer_cancel(order.status).map(|mv| {
                        write.release(order, &mut tried, mv.to, Release::Customer);
                        order.view(tried.last().map(|a| a.id.clone()))
                    }),
                    OrderChange::RetryPayment => retry(&mut write, order, &tried),
                };
                let Write {
                    u: mut done,
                    changes,
                    ..
                } = write;
                changes
                    .write(&mut done, &w.listing, w.at, &mut locked)
                    .await?;
                u = done;
                match view {
                    Ok(view) => OrderChanged::Done {
                        figures: u.figures(&locked).await?,
                        view,
                    },
                    Err(refusal) => OrderChanged::Refused(refusal),
                }
            }
        };
        u.commit(&self.store, &self.sink).await?;
        Ok(answer)
    }
}

/// The order was cancelled by its customer already (this change, done before).
fn cancelled_by_customer(order: &rows::OrderRow) -> bool {
    order.status == OrderStatus::Cancelled
        && order.closed_reason.as_deref() == Some(Release::Customer.reason())
}

/// A new attempt for a PAYMENT_REQUESTED order with none open (the open one if there is).
fn retry(
    write: &mut Write<'_>,
    order: &rows::OrderRow,
    tried: &[rows::AttemptRow],
) -> Result<OrderView, Refusal> {
    if order.status != OrderStatus::PaymentRequested {
        return Err(Refusal::OrderIs(order.status));
    }
    let open = tried
        .iter()
        .find(|a| a.status == PaymentStatus::Init && a.charged_at.is_none())
        .map(|a| a.id.clone());
    let payment = match open {
        Some(p) => p,
        None => {
            let due = order.payment_due_at.unwrap_or(write.u.at());
            write.open_attempt(order, tried, due)
        }
    };
    Ok(order.view(Some(payment)))
}
