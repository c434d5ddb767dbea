/*
 * distribution.c: score distributions, the sorted composites of a profile's scores packed as
 * float8s in a bytea stored uncompressed out of line (STORAGE EXTERNAL), so a percentile is a
 * binary search that fetches a handful of TOAST slices instead of the whole array or the scores
 * table.
 */
#include "postgres.h"

#include <math.h>

#include "access/detoast.h"
#include "catalog/pg_type.h"
#include "fmgr.h"
#include "utils/array.h"
#include "utils/memutils.h"

static int
float8_cmp(const void *a, const void *b)
{
	double		x = *(const double *) a;
	double		y = *(const double *) b;

	return (x > y) - (x < y);
}

/*
 * A float8[]'s values, sorted, as a bytea of native float8s: the form of a distribution.  It
 * holds no NULL, and no NaN (qsort needs a total order).
 */
static bytea *
sorted_distribution(ArrayType *arr)
{
	int			n = ArrayGetNItems(ARR_NDIM(arr), ARR_DIMS(arr));
	bytea	   *out;
	double	   *v;
	int			i;

	if (ARR_ELEMTYPE(arr) != FLOAT8OID)
		elog(ERROR, "expected float8[]");
	if (ARR_HASNULL(arr) && array_contains_nulls(arr))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("a score distribution cannot hold NULL")));
	out = palloc(VARHDRSZ + (Size) n * sizeof(double));
	SET_VARSIZE(out, VARHDRSZ + (Size) n * sizeof(double));
	v = (double *) VARDATA(out);
	if (n > 0)
		memcpy(v, ARR_DATA_PTR(arr), (Size) n * sizeof(double));
	for (i = 0; i < n; i++)
		if (isnan(v[i]))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("a score distribution cannot hold NaN")));
	qsort(v, n, sizeof(double), float8_cmp);
	return out;
}

/* _pack_sorted(float8[]): the array's values as a distribution. */
PG_FUNCTION_INFO_V1(es_pack_sorted);
Datum
es_pack_sorted(PG_FUNCTION_ARGS)
{
	PG_RETURN_BYTEA_P(sorted_distribution(PG_GETARG_ARRAYTYPE_P(0)));
}

/*
 * A distribution given to _count_below or _merge_distribution is a bytea that anyone can pass:
 * a length that is not a whole number of float8s, a NaN, or values out of order are 22P03.
 */
static void
distribution_malformed(const char *why)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_BINARY_REPRESENTATION),
			 errmsg("malformed score distribution: %s", why),
			 errhint("A score distribution is the bytea of _pack_sorted: sorted float8 values, no NaN.")));
}

/* The number of values of a distribution of size bytes (its length less the header). */
static int64
distribution_length(Size size)
{
	if (size % sizeof(double) != 0)
		distribution_malformed(psprintf("%zu bytes, not a multiple of %zu", size, sizeof(double)));
	return (int64) (size / sizeof(double));
}

/* Checks n values of a distribution in memory (possibly unaligned): no NaN, sorted. */
static void
distribution_check(const char *values, int64 n)
{
	double		prev = 0;
	int64		i;

	for (i = 0; i < n; i++)
	{
		double		v;

		memcpy(&v, values + i * sizeof(double), sizeof v);
		if (isnan(v))
			distribution_malformed(psprintf("value " INT64_FORMAT " is NaN", i + 1));
		if (i > 0 && v < prev)
			distribution_malformed(psprintf("value " INT64_FORMAT " (%g) is less than the one before (%g)", i + 1,
											v, prev));
		prev = v;
	}
}

/* A distribution detoasted once per query, for _count_below over many rows. */
typedef struct DistributionCache
{
	Oid			toastrelid;
	Oid			valueid;
	int64		n;
	double	   *values;
} DistributionCache;

/*
 * _count_below(sorted bytea, score): how many values of the distribution are < score.
 * One call (score_percentile) binary-searches through TOAST slices; many calls over the same
 * stored value (a refresh's percentile UPDATE) detoast it once and search memory.
 */
PG_FUNCTION_INFO_V1(es_count_below);
Datum
es_count_below(PG_FUNCTION_ARGS)
{
	Datum		packed = PG_GETARG_DATUM(0);
	double		score = PG_GETARG_FLOAT8(1);
	struct varlena *raw = (struct varlena *) DatumGetPointer(packed);
	int64		n = distribution_length(toast_raw_datum_size(packed) - VARHDRSZ);
	int64		lo = 0,
				hi = n;
	const double *whole = NULL;
	bool		sliceable = false;
	DistributionCache *cache = (DistributionCache *) fcinfo->flinfo->fn_extra;

	if (isnan(score))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("score must be a number, not NaN")));
	if (VARATT_IS_EXTERNAL_ONDISK(raw))
	{
		struct varatt_external toast_pointer;

		VARATT_EXTERNAL_GET_POINTER(toast_pointer, raw);
		if (cache != NULL && cache->toastrelid == toast_pointer.va_toastrelid &&
			cache->valueid == toast_pointer.va_valueid)
			whole = cache->values;	/* seen before in this query */
		else if (cache != NULL && !VARATT_EXTERNAL_IS_COMPRESSED(toast_pointer))
		{
			/* The second call on a new value: keep a detoasted copy, checked once, for the rest. */
			bytea	   *copy = DatumGetByteaPCopy(packed);

			distribution_check(VARDATA_ANY(copy), n);
			cache->toastrelid = InvalidOid;	/* no valid entry until the copy is made */
			if (cache->values != NULL)
				pfree(cache->values);
			cache->values = NULL;
			cache->values = MemoryContextAlloc(fcinfo->flinfo->fn_mcxt, Max((Size) n, 1) * sizeof(double));
			memcpy(cache->values, VARDATA_ANY(copy), (Size) n * sizeof(double));
			pfree(copy);
			cache->toastrelid = toast_pointer.va_toastrelid;
			cache->valueid = toast_pointer.va_valueid;
			cache->n = n;
			whole = cache->values;
		}
		else
		{
			sliceable = !VARATT_EXTERNAL_IS_COMPRESSED(toast_pointer);
			if (cache == NULL)
				fcinfo->flinfo->fn_extra = MemoryContextAllocZero(fcinfo->flinfo->fn_mcxt, sizeof(DistributionCache));
		}
	}
	if (whole == NULL && !sliceable)
	{
		/* In memory (small, or compressed and so read whole anyway): check it all. */
		whole = (const double *) VARDATA_ANY(PG_DETOAST_DATUM_PACKED(packed));
		distribution_check((const char *) whole, n);
	}

	while (lo < hi)
	{
		int64		mid = lo + (hi - lo) / 2;
		double		v;

		if (whole != NULL)
			memcpy(&v, whole + mid, sizeof v);
		else
		{
			bytea	   *slice = DatumGetByteaPSlice(packed, (int32) (mid * sizeof(double)), sizeof(double));

			memcpy(&v, VARDATA_ANY(slice), sizeof v);
			pfree(slice);
			/* a single call reads only these values: check what it reads */
			if (isnan(v))
				distribution_malformed(psprintf("value " INT64_FORMAT " is NaN", mid + 1));
		}
		if (v < score)
			lo = mid + 1;
		else
			hi = mid;
	}
	PG_RETURN_INT64(lo);
}

/*
 * The distribution and the scores table disagree (a score was changed behind the refresh's back,
 * say): 22000, which the refresh catches to rebuild the distribution from the scores.
 */
static void
distribution_out_of_step(const char *detail)
{
	ereport(ERROR,
			(errcode(ERRCODE_DATA_EXCEPTION),
			 errmsg("score distribution out of step with the scores"),
			 errdetail_internal("%s", detail)));
}

/*
 * _merge_distribution(sorted bytea, removed float8[], added float8[]): the distribution with
 * one occurrence of each removed value taken out and the added values merged in, in one pass
 * (an incremental refresh changes a few contacts of many).  A removed value that is not there
 * is an error: the distribution and the scores table disagree.
 */
PG_FUNCTION_INFO_V1(es_merge_distribution);
Datum
es_merge_distribution(PG_FUNCTION_ARGS)
{
	bytea	   *old = PG_GETARG_BYTEA_PP(0);
	int64		nold = distribution_length(VARSIZE_ANY_EXHDR(old));
	const char *ov = VARDATA_ANY(old);	/* possibly unaligned (a short varlena) */
	bytea	   *removed = sorted_distribution(PG_GETARG_ARRAYTYPE_P(1));
	bytea	   *added = sorted_distribution(PG_GETARG_ARRAYTYPE_P(2));
	const double *rem = (const double *) VARDATA(removed);
	const double *add = (const double *) VARDATA(added);
	int64		nrem = (int64) ((VARSIZE(removed) - VARHDRSZ) / sizeof(double));
	int64		nadd = (int64) ((VARSIZE(added) - VARHDRSZ) / sizeof(double));
	int64		nout = nold - nrem + nadd;
	bytea	   *out;
	double	   *o;
	double		prev = 0;
	int64		i = 0,
				k = 0,
				r = 0,
				a = 0;

	if (nout < 0 || nrem > nold)
		distribution_out_of_step(psprintf("It has " INT64_FORMAT " values, fewer than the " INT64_FORMAT " to remove.",
										  nold, nrem));
	if ((Size) nout > (MaxAllocSize - VARHDRSZ) / sizeof(double))
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("a score distribution cannot hold more than %zu values",
						(Size) ((MaxAllocSize - VARHDRSZ) / sizeof(double)))));
	out = palloc(VARHDRSZ + (Size) nout * sizeof(double));
	SET_VARSIZE(out, VARHDRSZ + (Size) nout * sizeof(double));
	o = (double *) VARDATA(out);
	while (i < nold || a < nadd)
	{
		double		v = 0;
		bool		from_old = false;

		if (i < nold)
		{
			memcpy(&v, ov + i * sizeof(double), sizeof v);
			if (isnan(v))
				distribution_malformed(psprintf("value " INT64_FORMAT " is NaN", i + 1));
			if (i > 0 && v < prev)
				distribution_malformed(psprintf("value " INT64_FORMAT " (%g) is less than the one before (%g)",
												i + 1, v, prev));
			from_old = a >= nadd || v <= add[a];
		}
		if (from_old)
		{
			prev = v;
			i++;
			/* skip it if it is the next value to remove (both sorted) */
			if (r < nrem && rem[r] < v)
				distribution_out_of_step(psprintf("%g, a value to remove, is not in it.", rem[r]));
			if (r < nrem && rem[r] == v)
			{
				r++;
				continue;
			}
		}
		else
			v = add[a++];
		if (k >= nout)
			distribution_out_of_step("Values to remove are not in it.");
		o[k++] = v;
	}
	if (r < nrem || k != nout)
		distribution_out_of_step(psprintf("Values to remove not in it: " INT64_FORMAT " of " INT64_FORMAT ".",
										  nrem - r, nrem));
	PG_RETURN_BYTEA_P(out);
}
