/*
 * predictions.c: the predictions of a stored score's summary at any horizon, and its lifetime
 * value (docs/model.md "Stored summary and any horizon"), for predict() and
 * customer_lifetime_value().  Called once per stored score: the profile is read by name through
 * the query's cache, the result's descriptor is blessed once, and summaries that repeat are
 * predicted once (the query's es_forecast_memo).
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "funcapi.h"
#include "utils/builtins.h"

#include "es_glue.h"

/* Arguments 2 to 10 of both functions: x, t_x, t_c, n_days, conv_days, x_v, m_v, opted_out,
 * undeliverable (engagement_scores' columns). */
static es_stored_summary
es_summary_args(FunctionCallInfo fcinfo)
{
	es_stored_summary s;

	s.x = PG_GETARG_INT64(2);
	s.t_x = PG_GETARG_INT64(3);
	s.t_c = PG_GETARG_INT64(4);
	s.n_days = PG_GETARG_INT64(5);
	s.conv_days = PG_GETARG_INT64(6);
	s.x_v = PG_GETARG_INT64(7);
	s.m_v = PG_GETARG_FLOAT8(8);
	s.opted_out = PG_GETARG_BOOL(9);
	s.undeliverable = PG_GETARG_BOOL(10);
	return s;
}

/* _predict(profile, horizon_days, x, t_x, t_c, n_days, conv_days, x_v, m_v, opted_out,
 * undeliverable) -> engagement.prediction */
PG_FUNCTION_INFO_V1(es_predict_summary);
Datum
es_predict_summary(PG_FUNCTION_ARGS)
{
	const NamedProfile *profile = es_row_profile(fcinfo, 0);
	es_stored_summary summary = es_summary_args(fcinfo);
	es_prediction pr;
	char		err[ES_ERRLEN];
	int			status = es_predict(&summary, &profile->values, PG_GETARG_FLOAT8(1), es_query_forecast_memo(fcinfo),
										 &pr, err, sizeof err);
	Datum		values[4];
	bool		nulls[4] = {false, false, false, false};

	if (status != ES_OK)
		es_raise(status, err);
	values[0] = Float8GetDatum(pr.engagement_probability);
	values[1] = Float8GetDatum(pr.conversion_probability);
	values[2] = Float8GetDatum(pr.expected_engagements);
	values[3] = Float8GetDatum(pr.expected_value);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(es_result_tupdesc(fcinfo), values, nulls)));
}

/* _lifetime_value(profile, months, x, t_x, t_c, n_days, conv_days, x_v, m_v, opted_out,
 * undeliverable, monthly_discount_rate) -> float8 */
PG_FUNCTION_INFO_V1(es_lifetime_value_of_summary);
Datum
es_lifetime_value_of_summary(PG_FUNCTION_ARGS)
{
	const NamedProfile *profile = es_row_profile(fcinfo, 0);
	es_stored_summary summary = es_summary_args(fcinfo);
	double		clv;
	char		err[ES_ERRLEN];
	int			status = es_lifetime_value(&summary, &profile->values, PG_GETARG_INT32(1), PG_GETARG_FLOAT8(11),
										   es_query_forecast_memo(fcinfo), &clv, err, sizeof err);

	if (status != ES_OK)
		es_raise(status, err);
	PG_RETURN_FLOAT8(clv);
}

/* A check's failure, named after the SQL function whose argument failed it. */
static void
es_check_or_raise(int status, FunctionCallInfo fcinfo, const char *err)
{
	if (status != ES_OK)
		es_raise(status, psprintf("%s: %s", text_to_cstring(PG_GETARG_TEXT_PP(0)), err));
}

/* _horizon_ok(function_name, horizon_days): es_predict's check of its horizon, once per query. */
PG_FUNCTION_INFO_V1(es_horizon_ok);
Datum
es_horizon_ok(PG_FUNCTION_ARGS)
{
	char		err[ES_ERRLEN];

	es_check_or_raise(es_check_horizon(PG_GETARG_FLOAT8(1), err, sizeof err), fcinfo, err);
	PG_RETURN_BOOL(true);
}

/* _lifetime_ok(function_name, months, monthly_discount_rate): es_lifetime_value's checks. */
PG_FUNCTION_INFO_V1(es_lifetime_ok);
Datum
es_lifetime_ok(PG_FUNCTION_ARGS)
{
	char		err[ES_ERRLEN];

	es_check_or_raise(es_check_lifetime(PG_GETARG_INT32(1), PG_GETARG_FLOAT8(2), err, sizeof err), fcinfo, err);
	PG_RETURN_BOOL(true);
}
