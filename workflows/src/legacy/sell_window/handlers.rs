//! The first shape's handler bodies: reservations, payments, expiry, finalize and cancels, each deciding in the listing first.

use super::*;

/// Takes units for reservations in the listing before anything is awaited (interleaved
/// handlers can never both take the last units), has the run method write the orders, and
/// answers each reservation in arrival order.
pub(super) async fn reserve_items(
    ctx: &mut WorkflowContext<SellWindowWorkflow>,
    batch: ReserveBatch,
) -> Result<Vec<ReserveOutcome>, HandlerError> {
    let t = now(ctx);
    let mut plan = ctx.state_mut(|s| {
        s.enter();
        s.listing.reserve(&batch.items, t)
    });
    if !plan.accepted.is_empty() {
        let write = ctx.state(|s| ReservationWrite {
            listing: ListingKey {
                sell_window_id: s.listing.spec.sell_window_id.clone(),
                product_id: s.listing.spec.product_id.clone(),
            },
            orders: plan.accepted.clone(),
            quota_closed_by: plan
                .quota_closed
                .then(|| plan.accepted.last().map(|o| o.order_id.clone()))
                .flatten(),
            threshold_reached: plan
                .threshold_reached
                .then_some((s.listing.reserved_qty, s.listing.spec.min_qty)),
            at: t,
            answers: order_answers(&batch, &plan.accepted),
        });
        let written = if ctx.patched(MERGED_WRITES) {
            match written_by_run(ctx, RESERVATIONS, write).await {
                Some(result) => result,
                None => {
                    ctx.state_mut(|s| s.busy -= 1);
                    return Err("the workflow was cancelled".into());
                }
            }
        } else {
            ctx.execute_local_activity(Acts::record_reservations, write, write_opts())
                .await
                .map_err(|e| e.to_string())
        };
        if let Err(e) = written {
            // The write failed for good: give the units back before answering, and void
            // whatever a last attempt may still have committed, so the rows agree.
            let voided: Vec<Released> = plan
                .accepted
                .iter()
                .map(|o| Released {
                    order_id: o.order_id.clone(),
                    customer_id: o.customer_id.clone(),
                    qty: o.qty,
                    was: o.status,
                    payment_id: None,
                })
                .collect();
            let reopen = plan.quota_closed;
            ctx.state_mut(|s| s.listing.undo_reserve(&mut plan, &e));
            if ctx.patched(VOID_UNRECORDED_RESERVATIONS) {
                let voided = release(
                    ctx,
                    voided,
                    OrderStatus::Cancelled,
                    ReleaseReason::NotRecorded,
                    reopen,
                    t,
                )
                .await;
                if let Err(e) = voided {
                    ctx.state_mut(|s| s.busy -= 1);
                    return Err(HandlerError::from(anyhow_msg(e)));
                }
            }
        } else {
            let due: Vec<OrderId> = plan
                .accepted
                .iter()
                .filter(|o| o.status == OrderStatus::PaymentRequested)
                .map(|o| o.order_id.clone())
                .collect();
            if !due.is_empty() {
                open_payments(ctx, &due, t)
                    .await
                    .map_err(|e| HandlerError::from(anyhow_msg(e)))?;
                // Answers carry the pay link's payment id.
                ctx.state(|s| {
                    for outcome in plan.outcomes.iter_mut() {
                        if let ReserveOutcome::Reserved(v) = outcome
                            && let Some(fresh) = s.listing.order_view(&v.order_id)
                        {
                            *v = fresh;
                        }
                    }
                });
            }
        }
    }
    ctx.state_mut(|s| s.busy -= 1);
    Ok(plan.outcomes)
}

pub(super) fn refused(r: CancelRefusal) -> HandlerError {
    let code = match r {
        CancelRefusal::NotFound => RejectCode::NotFound,
        CancelRefusal::NotYours => RejectCode::PermissionDenied,
        CancelRefusal::Status(_) => RejectCode::FailedPrecondition,
    };
    reject(code, r)
}

/// Refunds every paid order in `orders` (one idempotent activity each).
pub(super) async fn refund_all(
    ctx: &WorkflowContext<SellWindowWorkflow>,
    orders: Vec<Released>,
    reason: &str,
    t: UnixMillis,
) -> WorkflowResult<()> {
    let price = ctx.state(|s| s.listing.spec.unit_price.clone());
    let what_paid = ctx.patched(REFUND_WHAT_PAID);
    for r in orders {
        let paid_by = ctx.state(|s| {
            s.listing
                .orders
                .get(&r.order_id)
                .and_then(|o| o.paid_by.clone())
        });
        let charged = if what_paid { paid_by } else { r.payment_id };
        if let Some(payment_id) = charged {
            let write = RefundWrite {
                listing: key(ctx),
                order_id: r.order_id,
                payment_id,
                customer_id: r.customer_id,
                amount: price.times(r.qty.get()),
                reason: reason.to_string(),
                at: t,
            };
            persist!(ctx, Acts::refund_payment, write, "refund");
        }
    }
    Ok(())
}

pub(super) fn anyhow_msg(e: temporalio_sdk::WorkflowTermination) -> String {
    format!("{e:?}")
}

/// Publishes the phase as a search attribute (when it changed) and the figures as the
/// workflow's current details, for operators in the Temporal UI.
pub(super) fn publish(ctx: &WorkflowContext<SellWindowWorkflow>) {
    let (f, changed) = ctx.state_mut(|s| {
        let f = s.listing.figures();
        let changed = s.published_phase != Some(f.phase);
        s.published_phase = Some(f.phase);
        (f, changed)
    });
    if changed {
        ctx.upsert_search_attributes([
            SA_SELL_WINDOW.value_set(f.sell_window_id.to_string()),
            SA_PRODUCT.value_set(f.product_id.to_string()),
            SA_PHASE.value_set(f.phase.as_str().to_string()),
        ]);
    }
    ctx.set_current_details(format!(
        "**{}** · quota {} · sold {}/{} · reserved {} · paid {} · threshold {} ({}) · batch {}",
        f.phase,
        f.quota_status,
        f.sold_qty,
        f.max_qty,
        f.reserved_qty,
        f.paid_qty,
        f.threshold_status,
        f.min_qty,
        f.batch_status
    ));
}

pub(super) async fn open_payments(
    ctx: &WorkflowContext<SellWindowWorkflow>,
    orders: &[OrderId],
    t: UnixMillis,
) -> WorkflowResult<()> {
    let payments = ctx.state_mut(|s| s.listing.open_payments(orders));
    for chunk in payments.chunks(CHUNK) {
        let write = PaymentsWrite {
            listing: key(ctx),
            payments: chunk.to_vec(),
            at: t,
        };
        persist!(ctx, Acts::open_payments, write, "open payments");
    }
    Ok(())
}

pub(super) async fn expire_due(
    ctx: &WorkflowContext<SellWindowWorkflow>,
    t: UnixMillis,
) -> WorkflowResult<()> {
    let (released, reopened) = ctx.state_mut(|s| s.listing.expire_due(t));
    release(
        ctx,
        released,
        OrderStatus::Expired,
        ReleaseReason::PaymentExpired,
        reopened,
        t,
    )
    .await?;
    publish(ctx);
    Ok(())
}

pub(super) async fn release(
    ctx: &WorkflowContext<SellWindowWorkflow>,
    orders: Vec<Released>,
    to: OrderStatus,
    reason: ReleaseReason,
    quota_reopened: bool,
    t: UnixMillis,
) -> WorkflowResult<()> {
    for chunk in orders.chunks(CHUNK) {
        let write = ReleaseWrite {
            listing: key(ctx),
            orders: chunk.to_vec(),
            to,
            reason,
            quota_reopened,
            at: t,
        };
        persist!(ctx, Acts::release_orders, write, "release orders");
    }
    Ok(())
}

/// Applies a payment result to the listing and persists its effect. With `batched`, a success
/// is written by the run method with the others of its workflow task; results the run itself
/// applies (those carried over from a hand-over) are written one by one.
pub(super) async fn apply_payment(
    ctx: &WorkflowContext<SellWindowWorkflow>,
    r: &PaymentResult,
    batched: bool,
) -> WorkflowResult<()> {
    let t = now(ctx);
    let effect = ctx.state_mut(|s| s.listing.apply_payment(r));
    let listing = key(ctx);
    match effect {
        PaymentEffect::Paid { customer_id, qty } if batched && ctx.patched(BATCHED_PAYMENTS) => {
            let write = PaidWrites {
                listing,
                payments: vec![PaidPayment {
                    order_id: r.order_id.clone(),
                    payment_id: r.payment_id.clone(),
                    customer_id,
                    qty,
                    event_id: r.event_id.clone(),
                }],
                at: t,
            };
            match written_by_run(ctx, PAID, write).await {
                Some(Ok(())) => {}
                Some(Err(e)) => return Err(ApplicationFailure::new(e).into()),
                None => return Err(WorkflowTermination::cancelled()),
            }
        }
        PaymentEffect::Paid { customer_id, qty } => {
            let write = PaidWrite {
                listing,
                order_id: r.order_id.clone(),
                payment_id: r.payment_id.clone(),
                customer_id,
                qty,
                event_id: r.event_id.clone(),
                at: t,
            };
            persist!(ctx, Acts::mark_paid, write, "mark order paid");
        }
        PaymentEffect::Failed {
            customer_id,
            failures,
        } => {
            let write = FailureWrite {
                listing,
                order_id: r.order_id.clone(),
                payment_id: r.payment_id.clone(),
                customer_id,
                error: r.error.clone().unwrap_or_else(|| "payment failed".into()),
                failures,
                at: t,
            };
            persist!(
                ctx,
                Acts::record_payment_failure,
                write,
                "record payment failure"
            );
        }
        PaymentEffect::Expired {
            released,
            quota_reopened,
        } => {
            release(
                ctx,
                vec![released],
                OrderStatus::Expired,
                ReleaseReason::PaymentExpired,
                quota_reopened,
                t,
            )
            .await?;
        }
        PaymentEffect::Refund {
            customer_id,
            amount,
        } => {
            let write = RefundWrite {
                listing,
                order_id: r.order_id.clone(),
                payment_id: r.payment_id.clone(),
                customer_id,
                amount,
                reason: "the payment arrived after the order had closed".into(),
                at: t,
            };
            persist!(ctx, Acts::refund_payment, write, "refund late payment");
        }
        PaymentEffect::Ignore => {}
    }
    publish(ctx);
    Ok(())
}

/// close_at: the seed's finalize_requested → finalized → production.scheduled → started.
pub(super) async fn finalize(ctx: &WorkflowContext<SellWindowWorkflow>) -> WorkflowResult<()> {
    let t = now(ctx);
    let plan = ctx.state_mut(|s| s.listing.finalize(t));
    let (batch_id, names) =
        ctx.state(|s| (s.listing.spec.batch_id(), s.listing.spec.work_steps.clone()));
    let listing = key(ctx);
    let (final_paid_qty, kind) = match plan {
        FinalizePlan::Failed { cancelled } => {
            release(
                ctx,
                cancelled,
                OrderStatus::Cancelled,
                ReleaseReason::GroupNotFormed,
                false,
                t,
            )
            .await?;
            (0, FinalizeKind::GroupNotFormed)
        }
        FinalizePlan::Finalized {
            expired,
            final_paid_qty,
            outcome,
        } => {
            release(
                ctx,
                expired,
                OrderStatus::Expired,
                ReleaseReason::UnpaidAtClose,
                false,
                t,
            )
            .await?;
            let kind = match outcome {
                FinalOutcome::Produce { work_order_id } => {
                    let steps = ctx.state(|s| {
                        s.listing
                            .steps
                            .iter()
                            .map(|(id, _)| id.clone())
                            .collect::<Vec<_>>()
                    });
                    let steps = steps
                        .into_iter()
                        .enumerate()
                        .map(|(n, id)| {
                            (
                                id,
                                names.get(n).cloned().unwrap_or_else(|| "produce".into()),
                            )
                        })
                        .collect();
                    FinalizeKind::Produce {
                        work_order_id,
                        steps,
                    }
                }
                FinalOutcome::NothingToProduce => FinalizeKind::NothingToProduce,
                FinalOutcome::CancelAndRefund { refunded } => {
                    release(
                        ctx,
                        refunded.clone(),
                        OrderStatus::Cancelled,
                        ReleaseReason::PaidUnderThreshold,
                        false,
                        t,
                    )
                    .await?;
                    refund_all(ctx, refunded, "the group bought less than the threshold", t)
                        .await?;
                    FinalizeKind::CancelledUnderThreshold
                }
            };
            (final_paid_qty, kind)
        }
    };
    let write = FinalizeWrite {
        listing,
        batch_id,
        final_paid_qty,
        kind,
        at: t,
    };
    persist!(ctx, Acts::finalize_listing, write, "finalize");
    Ok(())
}
