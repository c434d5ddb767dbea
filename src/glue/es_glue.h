/*
 * es_glue.h: what the files of the PostgreSQL glue share (internal, not installed).
 *
 * The glue is C on purpose: the models live in the C++ kernels, reached only through the
 * noexcept, status-returning APIs of scoring_kernel.h and btyd_kernel.h.  So no C++ exception
 * can cross into PostgreSQL, and every ereport() of the glue is raised from a C frame that owns
 * no C++ object.
 *
 * One file per family of SQL objects:
 *   common.c        the module magic and the helpers below
 *   profiles.c      scoring profiles (by name or from a document) and event types, per query
 *   score_events.c  score_events / explain_events: state, transition, combine, (de)serialize, final
 *   state_text.c    the text form of the states decay_state and btyd_fit_state
 *   time_decay.c    time_decay (decay_state)
 *   distribution.c  score distributions: _pack_sorted, _count_below, _merge_distribution
 *   tracking.c      _track_event_changes, the statement-level change-tracking trigger function
 *   kind_map.c      _map_kind: a CRM's kind as an event type, through its source's kind map
 *   btyd.c          btyd_summary, fit_mbgnbd / fit_bgnbd (btyd_fit_state), p_alive and co.
 *   predictions.c   _predict, _lifetime_value: a stored summary's predictions at any horizon
 *   replaced.c      the 1.0 and 1.1 entry points that 1.2 replaced
 *   pg_compat.h     what differs between PostgreSQL 15, 16, 17 and 18 (version guards live there only)
 *
 * Every function the SQL scripts name ('MODULE_PATHNAME', 'es_...') keeps its name: installed
 * catalogs of every version refer to it.  Functions shared between files are es_-prefixed too,
 * so that no other loaded library's symbol can stand in for them.
 */
#ifndef ES_GLUE_H
#define ES_GLUE_H

#include "datatype/timestamp.h"
#include "access/tupdesc.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "utils/jsonb.h"
#include "utils/numeric.h"

#include "pg_compat.h"
#include "scoring_kernel.h"

#define ES_ERRLEN 256			/* a kernel's message buffer */

/* common.c */
es_noreturn extern void es_raise(int status, const char *message);
extern MemoryContext es_aggcontext(FunctionCallInfo fcinfo, const char *aggregate);
extern TimestampTz es_finite_timestamp(Datum d, const char *what);

/* profiles.c */

/* es_profile's fields are all doubles: the profile as an array of values. */
#define ES_PROFILE_VALUES ((int) (sizeof(es_profile) / sizeof(double)))

/*
 * A resolved profile: its name and values.  The cache interns them in fn_mcxt (one entry per
 * distinct name and values, never changed or freed during the query), so two pointers to
 * entries are equal exactly when the profiles are.  Zero-padded, so entries compare by memcmp.
 */
typedef struct NamedProfile
{
	char		name[NAMEDATALEN];
	es_profile	values;
} NamedProfile;

extern const NamedProfile *es_row_profile(FunctionCallInfo fcinfo, int argno);
extern const NamedProfile *es_interned_profile(FunctionCallInfo fcinfo, const NamedProfile *p);
extern const NamedProfile *es_builtin_default_profile(void);
extern int	es_event_type_of(FunctionCallInfo fcinfo, Oid value);
extern TupleDesc es_result_tupdesc(FunctionCallInfo fcinfo);
extern es_forecast_memo *es_query_forecast_memo(FunctionCallInfo fcinfo);

/*
 * score_events.c: the state, which btyd_summary shares.  Laid out for the transition function,
 * which touches a state per row in no useful order: the fields it reads and writes first, then
 * the first day keys in the same allocation, and the profile by pointer (one entry, hot in the
 * cache, for all the states of a query) rather than a copy in every state.  The latest bounces
 * are apart, allocated at a group's first bounce: a contact without bounces carries a pointer.
 */
typedef struct ScoreState
{
	const NamedProfile *profile;	/* an entry of a cache of this query (es_profile_by_name,
									 * es_interned_profile, ...): it outlives the state */
	int32	   *day_keys;		/* inline_keys, then an array of its own in the aggregate context */
	es_bounces *bounces;		/* NULL until the first bounce at or before as_of; then in the
								 * state's context */
	int32		ndays;
	int32		capacity;
	int32		compacted;		/* length of the last compaction: when to compact again */
	bool		sorted;			/* day_keys is already compact: one key per day, in day order */
	es_accum	acc;
	int32		inline_keys[FLEXIBLE_ARRAY_MEMBER];
} ScoreState;

extern ScoreState *es_score_state_add_event(ScoreState *st, MemoryContext aggcontext, int64 as_of,
											const NamedProfile *profile, int type, int64 occurred_at,
											double value);
extern void es_score_state_compact(ScoreState *st);
extern double es_conversion_value(Numeric n);

/* state_text.c: a cursor over a state's text form; every error is 22P02 and quotes the input */
typedef struct StateParser
{
	const char *type;
	char	   *input;
	char	   *pos;
} StateParser;

extern void es_append_float8(StringInfo buf, double v);
es_noreturn extern void es_state_syntax_error(StateParser *sp, const char *why);
extern bool es_state_accept(StateParser *sp, char c);
extern void es_state_expect(StateParser *sp, char c);
extern double es_state_float8(StateParser *sp);
extern int64 es_state_int64(StateParser *sp);
extern void es_state_end(StateParser *sp);

#endif							/* ES_GLUE_H */
