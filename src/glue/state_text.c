/*
 * state_text.c: the text form of the transition states engagement.decay_state and
 * engagement.btyd_fit_state.
 *
 * Citus splits a global aggregate into worker partials and a coordinator combine only when the
 * state type is not internal and survives its text output and input: so these states are
 * varlena types.  Doubles print in their shortest exact form (never NaN: the states refuse it),
 * so text -> state -> text is the identity and the state bits round-trip exactly.  Inside an
 * aggregate, transition and combine functions update the state in place (as float8_accum does);
 * only growth returns a new value, which the executor then copies into the aggregate context.
 */
#include "postgres.h"

#include <math.h>

#include "common/shortest_dec.h"
#include "utils/float.h"

#include "es_glue.h"

/* v in its shortest exact form */
void
es_append_float8(StringInfo buf, double v)
{
	char		digits[DOUBLE_SHORTEST_DECIMAL_LEN];

	double_to_shortest_decimal_buf(v, digits);
	appendStringInfoString(buf, digits);
}

/* Raises 22P02 with why, pointing at the cursor. */
void
es_state_syntax_error(StateParser *sp, const char *why)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_TEXT_REPRESENTATION),
			 errmsg("invalid input syntax for type %s: \"%s\"", sp->type, sp->input),
			 errdetail("%s at character %d.", why, (int) (sp->pos - sp->input) + 1)));
}

static void
state_skip_spaces(StateParser *sp)
{
	while (*sp->pos == ' ' || *sp->pos == '\t' || *sp->pos == '\n' || *sp->pos == '\r')
		sp->pos++;
}

/* Skips spaces, then c if it comes next: whether it did. */
bool
es_state_accept(StateParser *sp, char c)
{
	state_skip_spaces(sp);
	if (*sp->pos != c)
		return false;
	sp->pos++;
	return true;
}

void
es_state_expect(StateParser *sp, char c)
{
	if (!es_state_accept(sp, c))
		es_state_syntax_error(sp, psprintf("expected \"%c\"", c));
}

/* A number as float8in reads it (after spaces), never NaN.  One it cannot read, or that is
 * beyond the range of a double (1e999), is 22P02 like any other flaw of the text. */
double
es_state_float8(StateParser *sp)
{
	double		v;
	bool		error;

	state_skip_spaces(sp);
	if (*sp->pos == '\0' || strchr(",;()[]", *sp->pos) != NULL)
		es_state_syntax_error(sp, "expected a number");
	v = es_float8in_soft(sp->pos, &sp->pos, sp->type, sp->input, &error);
	if (error)
		es_state_syntax_error(sp, "expected a number within the range of a double precision");
	if (isnan(v))
		es_state_syntax_error(sp, "NaN is not a valid state value");
	return v;
}

/* A decimal integer (after spaces). */
int64
es_state_int64(StateParser *sp)
{
	char	   *end;
	int64		v;

	state_skip_spaces(sp);
	errno = 0;
	v = strtoi64(sp->pos, &end, 10);
	if (end == sp->pos || errno != 0)
		es_state_syntax_error(sp, "expected a 64-bit integer");
	sp->pos = end;
	return v;
}

/* Only spaces may follow the state. */
void
es_state_end(StateParser *sp)
{
	state_skip_spaces(sp);
	if (*sp->pos != '\0')
		es_state_syntax_error(sp, "unexpected text after the state");
}
