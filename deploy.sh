#!/usr/bin/env bash
# Builds the nightdump Lambda function, uploads it to S3 and deploys template.yml with
# CloudFormation. Safe to run again: an unchanged zip is not re-uploaded and an unchanged
# stack is left alone.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
template="$root/template.yml"

usage() {
    cat <<'EOF'
Usage: ./deploy.sh [options]

Deploys nightdump (a scheduled Lambda function that backs MongoDB up to S3) as a
CloudFormation stack. Options override the environment variables in brackets.

Required:
  --bucket NAME          existing S3 bucket for the backups          [NIGHTDUMP_BUCKET]
  --secret-arn ARN       full ARN of the Secrets Manager secret holding the MongoDB
                         connection string (or JSON {"uri": "..."})  [NIGHTDUMP_SECRET_ARN]
  --alert-email ADDRESS  where failure and staleness alerts go       [NIGHTDUMP_ALERT_EMAIL]

Optional:
  --prefix PREFIX        key prefix inside the bucket (default nightdump)  [NIGHTDUMP_PREFIX]
  --stack-name NAME      CloudFormation stack, also the function's name
                         (default nightdump)                        [NIGHTDUMP_STACK_NAME]
  --region REGION        AWS region (default: AWS_REGION, AWS_DEFAULT_REGION or the CLI profile)
  --kms-key-arn ARN      KMS key for SSE-KMS of the backups (default: the stack creates one)
  --schedule EXPR        EventBridge Scheduler expression (default cron(0 3 * * ? *))
  --timezone TZ          time zone of the schedule, e.g. Europe/Paris (default UTC)
  --arch ARCH            arm64 (default) or x86_64
  --zip PATH             deploy this zip (bootstrap at its root) instead of building
  --code-bucket NAME     bucket for the function's zip, in the stack's region (default:
                         nightdump-artifacts-ACCOUNT-REGION, created when missing; never
                         the backup bucket, whose lock and lifecycle rules are for backups)
  --engine ENGINE        lambda (default) or fargate: the nightly backup in an ECS Fargate
                         task run by Step Functions, for databases that do not fit one
                         15-minute Lambda run (docs/scaling.md)            [NIGHTDUMP_ENGINE]
  --image-binary PATH    fargate: put this static linux/arm64 nightdump in the task image
                         instead of building it
  --subnets IDS          comma-separated subnets of the task (fargate; default: the
                         default VPC's) and of the function (--function-in-vpc)
  --security-groups IDS  comma-separated security groups of the same (fargate default:
                         the default VPC's default group)
  --function-in-vpc      run the function in --subnets with --security-groups, for a
                         database reachable only from a VPC; checks that the VPC has S3
                         and Secrets Manager endpoints or a NAT gateway (docs/network.md)
  --run-now              start a backup as soon as the stack is deployed (the staleness
                         alarm is in ALARM until a first backup succeeds)
  --confirm-subscription LINK
                         confirm the alert subscription with the link from AWS's email
                         (copied, not clicked) so that only this account can unsubscribe
                         it, and exit
  --explain-schedule EXPR
                         print the staleness window deploy.sh derives from a schedule
                         expression, and exit
  --parameter KEY=VALUE  any other template parameter, repeatable
                         (e.g. --parameter MemorySize=2048 --parameter Include='app.*')
  -h, --help             show this help

Options left out on an update keep the value the stack already has.
Honours AWS_ENDPOINT_URL, AWS_PROFILE and the other standard AWS CLI variables.
EOF
}

die() {
    echo "deploy.sh: $*" >&2
    exit 1
}

# The value of NAME in a URL query string, percent-decoded.
query_param() {
    local query="&$1" name="$2" value
    value="${query#*&"$name"=}"
    [[ "$value" == "$query" ]] && return 0
    value="${value%%&*}"
    value="${value//+/ }"
    printf '%b' "${value//%/\\x}"
}

# Confirms an email subscription as its owner (AuthenticateOnUnsubscribe): the link in every
# alert then needs this account's credentials to unsubscribe. Clicking the confirmation link
# instead lets anyone who holds one alert email silence the alerts.
confirm_subscription() {
    local link="$1" topic token region arn
    [[ "$link" =~ ^https://sns\.[a-z0-9-]+\.amazonaws\.com(\.cn)?/[^?]*\?(.+)$ ]] ||
        die "'$link' is not an SNS confirmation link (https://sns.REGION.amazonaws.com/confirmation.html?TopicArn=...&Token=...): copy the link from AWS's email"
    topic="$(query_param "${BASH_REMATCH[2]}" TopicArn)"
    token="$(query_param "${BASH_REMATCH[2]}" Token)"
    [[ "$topic" =~ ^arn:aws[a-z-]*:sns:([a-z0-9-]+):[0-9]{12}:[A-Za-z0-9_-]+$ ]] ||
        die "the link has no topic ARN: copy the whole link from AWS's email"
    region="${BASH_REMATCH[1]}"
    [[ "$token" =~ ^[0-9a-f]+$ ]] || die "the link has no token: copy the whole link from AWS's email"
    command -v aws >/dev/null 2>&1 || die "aws CLI not found: install AWS CLI v2 (https://docs.aws.amazon.com/cli/) or 'pip install awscli'"
    local args=(--region "$region")
    [[ -n "${AWS_ENDPOINT_URL:-}" ]] && args+=(--endpoint-url "$AWS_ENDPOINT_URL")
    arn="$(aws "${args[@]}" sns confirm-subscription --topic-arn "$topic" --token "$token" \
        --authenticate-on-unsubscribe true --query SubscriptionArn --output text)" ||
        die "SNS refused the confirmation (a link expires after 3 days and confirms once): see the error above"
    echo "deploy.sh: subscription $arn confirmed; unsubscribing it now needs this account's AWS credentials"
}

need_value() {
    [[ $# -ge 2 && -n "$2" ]] || die "$1 needs a value (see --help)"
}

# Hours without a success before the staleness alarm fires, from the schedule's longest gap
# between two runs plus two hours (retries, a slow night): 26 for a daily schedule. CloudWatch
# evaluates an alarm over seven days at most, so a schedule further apart cannot be watched.
stale_hours() {
    local expr="$1" n unit gap hours fields minute hour dom dow
    if [[ "$expr" =~ ^rate\(([0-9]+)\ (minute|minutes|hour|hours|day|days)\)$ ]]; then
        n="${BASH_REMATCH[1]}"; unit="${BASH_REMATCH[2]}"
        case "$unit" in
            minute*) gap=$(((n + 59) / 60)) ;;
            hour*) gap=$n ;;
            day*) gap=$((n * 24)) ;;
        esac
    elif [[ "$expr" =~ ^cron\((.+)\)$ ]]; then
        read -r -a fields <<<"${BASH_REMATCH[1]}"
        [[ ${#fields[@]} -eq 6 ]] || die "schedule '$expr' must have six cron fields (minutes hours day-of-month month day-of-week year)"
        minute="${fields[0]}"; hour="${fields[1]}"; dom="${fields[2]}"; dow="${fields[4]}"
        if [[ "$dom" != "*" && "$dom" != "?" ]]; then
            die "schedule '$expr' runs on days of the month: the staleness alarm can watch at most 7 days between backups (CloudWatch's limit); use a daily or weekly schedule"
        elif [[ "$dow" != "*" && "$dow" != "?" ]]; then
            gap="$(dow_gap_days "$dow")" ||
                die "schedule '$expr': day of week '$dow' is not a list or range of days (SUN-SAT or 1-7); the nth or last weekday of a month is too far apart for the staleness alarm"
            gap=$((gap * 24))
        elif [[ "$hour" == "*" ]]; then
            gap=1
        elif [[ "$hour" =~ ^[0-9]+/([0-9]+)$ || "$hour" =~ ^\*/([0-9]+)$ ]]; then
            gap="${BASH_REMATCH[1]}"
        elif [[ "$hour" =~ ^[0-9]+(,[0-9]+)+$ ]]; then
            # The longest gap between listed hours, around midnight too.
            local -a hs
            IFS=, read -r -a hs <<<"$hour"
            mapfile -t hs < <(printf '%s\n' "${hs[@]}" | sort -n)
            gap=$((hs[0] + 24 - hs[${#hs[@]} - 1]))
            for ((i = 1; i < ${#hs[@]}; i++)); do
                ((hs[i] - hs[i - 1] > gap)) && gap=$((hs[i] - hs[i - 1]))
            done
        elif [[ "$hour" =~ ^[0-9]+$ ]]; then
            gap=24
        else
            gap=24
        fi
        : "$minute"
    else
        die "schedule '$expr' must be cron(...) or rate(...) for the staleness alarm to follow it"
    fi
    ((gap <= 168)) || die "schedule '$expr' runs less often than once a week: the staleness alarm can watch at most 168 hours (CloudWatch's limit); back up at least weekly"
    # A weekly schedule gets the whole seven days: a run late by more than its own hour then
    # shows as stale until it succeeds.
    hours=$((gap + 2 > 168 ? 168 : gap + 2))
    echo "$hours"
}

# The longest gap, in days, between the days a cron day-of-week field names (1 = SUN).
dow_gap_days() {
    local spec="${1^^}" part d i gap
    local -a parts days=()
    local names=(SUN MON TUE WED THU FRI SAT)
    for i in "${!names[@]}"; do spec="${spec//${names[$i]}/$((i + 1))}"; done
    IFS=, read -r -a parts <<<"$spec"
    for part in "${parts[@]}"; do
        if [[ "$part" =~ ^([1-7])-([1-7])$ ]]; then
            for ((d = BASH_REMATCH[1]; d <= BASH_REMATCH[2]; d++)); do days+=("$d"); done
        elif [[ "$part" =~ ^[1-7]$ ]]; then
            days+=("$part")
        else
            return 1
        fi
    done
    mapfile -t days < <(printf '%s\n' "${days[@]}" | sort -nu)
    gap=$((days[0] + 7 - days[${#days[@]} - 1]))
    for ((i = 1; i < ${#days[@]}; i++)); do
        ((days[i] - days[i - 1] > gap)) && gap=$((days[i] - days[i - 1]))
    done
    echo "$gap"
}

bucket="${NIGHTDUMP_BUCKET:-}"
prefix="${NIGHTDUMP_PREFIX:-nightdump}"
secret_arn="${NIGHTDUMP_SECRET_ARN:-}"
alert_email="${NIGHTDUMP_ALERT_EMAIL:-}"
stack_name="${NIGHTDUMP_STACK_NAME:-nightdump}"
region="${AWS_REGION:-${AWS_DEFAULT_REGION:-}}"
kms_key_arn=""
schedule=""
timezone=""
arch=""
zip_path=""
code_bucket=""
engine="${NIGHTDUMP_ENGINE:-}"
image_binary=""
subnets=""
security_groups=""
function_in_vpc=""
extra_parameters=()
run_now=""

while [[ $# -gt 0 ]]; do
    case "$1" in
        -h | --help) usage; exit 0 ;;
        --bucket) need_value "$@"; bucket="$2"; shift 2 ;;
        --prefix) need_value "$@"; prefix="$2"; shift 2 ;;
        --secret-arn) need_value "$@"; secret_arn="$2"; shift 2 ;;
        --alert-email) need_value "$@"; alert_email="$2"; shift 2 ;;
        --stack-name) need_value "$@"; stack_name="$2"; shift 2 ;;
        --region) need_value "$@"; region="$2"; shift 2 ;;
        --kms-key-arn) need_value "$@"; kms_key_arn="$2"; shift 2 ;;
        --schedule) need_value "$@"; schedule="$2"; shift 2 ;;
        --timezone) need_value "$@"; timezone="$2"; shift 2 ;;
        --arch) need_value "$@"; arch="$2"; shift 2 ;;
        --zip) need_value "$@"; zip_path="$2"; shift 2 ;;
        --code-bucket) need_value "$@"; code_bucket="$2"; shift 2 ;;
        --engine) need_value "$@"; engine="$2"; shift 2 ;;
        --image-binary) need_value "$@"; image_binary="$2"; shift 2 ;;
        --subnets) need_value "$@"; subnets="$2"; shift 2 ;;
        --security-groups) need_value "$@"; security_groups="$2"; shift 2 ;;
        --parameter) need_value "$@"; extra_parameters+=("$2"); shift 2 ;;
        --run-now) run_now=1; shift ;;
        --confirm-subscription) need_value "$@"; confirm_subscription "$2"; exit 0 ;;
        --function-in-vpc) function_in_vpc=1; shift ;;
        --explain-schedule)
            need_value "$@"
            hours="$(stale_hours "$2")" || exit 1
            echo "StaleAfterHours=$hours MaxAge=${hours}h"
            exit 0 ;;
        *) die "unknown option '$1' (see --help)" ;;
    esac
done

# --- check every input before touching AWS -------------------------------------------------

bucket_re='^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$'
kms_re='^arn:aws[a-z-]*:kms:[a-z0-9-]+:[0-9]{12}:key/[A-Za-z0-9-]+$'

[[ -n "$bucket" ]] || die "no backup bucket: pass --bucket NAME or set NIGHTDUMP_BUCKET"
[[ "$bucket" =~ $bucket_re ]] || die "'$bucket' is not an S3 bucket name (3-63 lowercase letters, digits, '.', '-'): fix --bucket"
[[ "$prefix" =~ ^[A-Za-z0-9._=-]+(/[A-Za-z0-9._=-]+)*$ ]] ||
    die "prefix '$prefix' must be path segments of letters, digits, '.', '_', '=', '-' without leading or trailing '/': fix --prefix"
[[ -n "$secret_arn" ]] || die "no MongoDB secret: pass --secret-arn ARN or set NIGHTDUMP_SECRET_ARN (create it with 'aws secretsmanager create-secret')"
[[ "$secret_arn" =~ ^arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:[0-9]{12}:secret:.+-[A-Za-z0-9]{6}$ ]] ||
    die "'$secret_arn' is not a full secret ARN: pass the ARN with its 6-character suffix, as printed by 'aws secretsmanager describe-secret --query ARN'"
[[ -n "$alert_email" ]] || die "no alert address: pass --alert-email ADDRESS or set NIGHTDUMP_ALERT_EMAIL"
[[ "$alert_email" =~ ^[^@[:space:]]+@[^@[:space:]]+\.[^@[:space:]]+$ ]] || die "'$alert_email' is not an email address: fix --alert-email"
[[ "$stack_name" =~ ^[A-Za-z][A-Za-z0-9-]{0,63}$ ]] ||
    die "stack name '$stack_name' must start with a letter and be at most 64 letters, digits or '-' (it also names the function): fix --stack-name"
[[ -z "$kms_key_arn" || "$kms_key_arn" =~ $kms_re ]] || die "'$kms_key_arn' is not a KMS key ARN (aliases are not accepted): fix --kms-key-arn"
[[ -z "$schedule" || "$schedule" =~ ^(cron|rate|at)\(.+\)$ ]] || die "schedule '$schedule' must be cron(...), rate(...) or at(...): fix --schedule"
[[ -z "$arch" || "$arch" == arm64 || "$arch" == x86_64 ]] || die "architecture '$arch' must be arm64 or x86_64: fix --arch"
[[ -z "$code_bucket" || "$code_bucket" =~ $bucket_re ]] || die "'$code_bucket' is not an S3 bucket name: fix --code-bucket"
[[ -z "$engine" || "$engine" == lambda || "$engine" == fargate ]] || die "engine '$engine' must be lambda or fargate: fix --engine"
[[ -z "$image_binary" || -f "$image_binary" ]] || die "image binary '$image_binary' not found: fix --image-binary"
[[ -z "$subnets" || "$subnets" =~ ^subnet-[0-9a-f]+(,subnet-[0-9a-f]+)*$ ]] || die "'$subnets' is not a comma-separated list of subnet ids (subnet-...): fix --subnets"
[[ -z "$security_groups" || "$security_groups" =~ ^sg-[0-9a-f]+(,sg-[0-9a-f]+)*$ ]] || die "'$security_groups' is not a comma-separated list of security group ids (sg-...): fix --security-groups"
[[ "$engine" == fargate || -z "$image_binary" ]] || die "--image-binary is for --engine fargate: add it or drop it"
if [[ "$engine" != fargate && -z "$function_in_vpc" && ( -n "$subnets" || -n "$security_groups" ) ]]; then
    die "--subnets and --security-groups are for --engine fargate or --function-in-vpc: add one or drop them"
fi
# No default VPC fallback for the function: a Lambda function in a public subnet has no
# internet access, so the default VPC's subnets would leave it unable to reach anything.
if [[ -n "$function_in_vpc" && ( -z "$subnets" || -z "$security_groups" ) ]]; then
    die "--function-in-vpc needs --subnets and --security-groups: private subnets that reach MongoDB, with S3 and Secrets Manager endpoints or a NAT gateway (docs/network.md)"
fi
for kv in ${extra_parameters[@]+"${extra_parameters[@]}"}; do
    [[ "$kv" =~ ^[A-Za-z0-9]+=.*$ ]] || die "--parameter '$kv' must look like KEY=VALUE"
    key="${kv%%=*}"
    awk '/^[A-Za-z]/ { section = $1 } section == "Parameters:" && /^  [A-Za-z0-9]+:$/ { print substr($1, 1, length($1) - 1) }' "$template" |
        grep -qxF "$key" || die "--parameter '$kv': template.yml has no parameter '$key'"
done
[[ -f "$template" ]] || die "$template not found: run deploy.sh from a nightdump checkout"

command -v aws >/dev/null 2>&1 || die "aws CLI not found: install AWS CLI v2 (https://docs.aws.amazon.com/cli/) or 'pip install awscli'"

# Passed explicitly because not every AWS CLI release reads AWS_ENDPOINT_URL itself.
aws_args=()
[[ -n "$region" ]] && aws_args+=(--region "$region")
[[ -n "${AWS_ENDPOINT_URL:-}" ]] && aws_args+=(--endpoint-url "$AWS_ENDPOINT_URL")
awsc() { aws ${aws_args[@]+"${aws_args[@]}"} "$@"; }

if [[ -z "$region" ]]; then
    region="$(aws configure get region 2>/dev/null || true)"
    [[ -n "$region" ]] || die "no AWS region: pass --region REGION or set AWS_REGION"
    aws_args+=(--region "$region")
fi

# cargo-lambda from the project venv links with the venv's ziglang (`python3 -m ziglang`), so
# the venv goes first on PATH for the build when that is where cargo-lambda lives.
build_path="$PATH"
if [[ -z "$zip_path" ]]; then
    command -v cargo >/dev/null 2>&1 || die "cargo not found: install Rust with rustup (https://rustup.rs) or pass --zip PATH"
    if ! cargo lambda --version >/dev/null 2>&1; then
        build_path="$root/.venv/bin:$PATH"
        PATH="$build_path" cargo lambda --version >/dev/null 2>&1 ||
            die "cargo-lambda not found: 'pip install cargo-lambda' (or .venv/bin/pip install -r tests/python/requirements-deploy.txt), or pass --zip PATH"
    fi
fi
if [[ -n "$zip_path" ]]; then
    [[ -f "$zip_path" && -r "$zip_path" ]] || die "zip '$zip_path' not found or unreadable: fix --zip"
    if command -v unzip >/dev/null 2>&1; then
        unzip -Z1 "$zip_path" 2>/dev/null | grep -qx bootstrap ||
            die "zip '$zip_path' has no 'bootstrap' at its root: build it with 'cargo lambda build --release --output-format zip --bin nightdump'"
    fi
fi

# --- check the account ---------------------------------------------------------------------

account="$(awsc sts get-caller-identity --query Account --output text 2>/dev/null)" ||
    die "no usable AWS credentials: configure them ('aws configure', AWS_PROFILE or AWS_ACCESS_KEY_ID) and retry"
awsc s3api head-bucket --bucket "$bucket" >/dev/null 2>&1 ||
    die "bucket '$bucket' does not exist or is not accessible in account $account: create it or fix --bucket"

# A bucket's region as S3 names it: none for us-east-1, EU for eu-west-1 (the oldest buckets).
bucket_region() {
    local where
    where="$(awsc s3api get-bucket-location --bucket "$1" --query LocationConstraint --output text 2>/dev/null)" || return 1
    case "$where" in None | null | "") echo us-east-1 ;; EU) echo eu-west-1 ;; *) echo "$where" ;; esac
}
# The function reaches its buckets in its own region (AWS_REGION is Lambda's) and CloudFormation
# reads the code from the stack's: a bucket elsewhere fails the deploy or every run.
backup_region="$(bucket_region "$bucket")" || die "cannot read the region of bucket '$bucket' (s3:GetBucketLocation): grant it or fix --bucket"
[[ "$backup_region" == "$region" ]] ||
    die "bucket '$bucket' is in $backup_region but the stack would be in $region: deploy with --region $backup_region, or use a bucket in $region"
if [[ -z "$code_bucket" ]]; then
    code_bucket="nightdump-artifacts-$account-$region"
    if ! awsc s3api head-bucket --bucket "$code_bucket" >/dev/null 2>&1; then
        echo "deploy.sh: creating the artifacts bucket $code_bucket (the function's code, never the backups)"
        if [[ "$region" == us-east-1 ]]; then
            awsc s3api create-bucket --bucket "$code_bucket" >/dev/null
        else
            awsc s3api create-bucket --bucket "$code_bucket" --create-bucket-configuration LocationConstraint="$region" >/dev/null
        fi || die "could not create the artifacts bucket $code_bucket: create it or pass --code-bucket"
        awsc s3api put-public-access-block --bucket "$code_bucket" --public-access-block-configuration \
            BlockPublicAcls=true,IgnorePublicAcls=true,BlockPublicPolicy=true,RestrictPublicBuckets=true >/dev/null || true
    fi
else
    awsc s3api head-bucket --bucket "$code_bucket" >/dev/null 2>&1 ||
        die "code bucket '$code_bucket' does not exist or is not accessible: create it or fix --code-bucket"
    [[ "$code_bucket" != "$bucket" ]] ||
        die "the code bucket is the backup bucket, whose Object Lock and lifecycle rules are for backups: drop --code-bucket (an artifacts bucket is created) or name another"
fi
code_region="$(bucket_region "$code_bucket")" || die "cannot read the region of code bucket '$code_bucket': grant s3:GetBucketLocation or fix --code-bucket"
[[ "$code_region" == "$region" ]] ||
    die "code bucket '$code_bucket' is in $code_region but the stack would be in $region: CloudFormation reads the function's code from the stack's region; drop --code-bucket or name a bucket in $region"
awsc secretsmanager describe-secret --secret-id "$secret_arn" >/dev/null 2>&1 ||
    die "secret '$secret_arn' not found in $region: create it ('aws secretsmanager create-secret') or fix --secret-arn"

stack_status="$(awsc cloudformation describe-stacks --stack-name "$stack_name" \
    --query 'Stacks[0].StackStatus' --output text 2>/dev/null || true)"
case "$stack_status" in
    ROLLBACK_COMPLETE | ROLLBACK_FAILED | DELETE_FAILED)
        die "stack '$stack_name' is $stack_status and cannot be updated: delete it with 'aws cloudformation delete-stack --stack-name $stack_name' and rerun" ;;
    # A change set that was never executed (an interrupted first deploy): nothing was created,
    # and 'cloudformation deploy' creates the stack from there.
    REVIEW_IN_PROGRESS)
        echo "deploy.sh: stack '$stack_name' is REVIEW_IN_PROGRESS (a first deploy that never ran): deploying it anew"
        stack_status="" ;;
    *_IN_PROGRESS)
        die "stack '$stack_name' is $stack_status: wait until 'aws cloudformation describe-stacks --stack-name $stack_name' shows it finished, then rerun" ;;
esac

# Build for the architecture the stack will get: explicit, else the stack's current one, else
# the template default.
if [[ -z "$arch" ]]; then
    if [[ -n "$stack_status" ]]; then
        arch="$(awsc cloudformation describe-stacks --stack-name "$stack_name" \
            --query "Stacks[0].Parameters[?ParameterKey=='Architecture'].ParameterValue" --output text 2>/dev/null || true)"
    fi
    [[ "$arch" == arm64 || "$arch" == x86_64 ]] || arch=arm64
fi

# --- build ---------------------------------------------------------------------------------

if [[ -z "$zip_path" ]]; then
    if [[ "$arch" == arm64 ]]; then
        target=aarch64-unknown-linux-gnu
        arch_flag=--arm64
    else
        target=x86_64-unknown-linux-gnu
        arch_flag=--x86-64
    fi
    if command -v rustup >/dev/null 2>&1; then
        rustup target list --installed 2>/dev/null | grep -qx "$target" ||
            die "Rust target $target missing: run 'rustup target add $target' (or deploy with --arch x86_64)"
    fi
    echo "deploy.sh: building nightdump for $arch"
    (cd "$root" && PATH="$build_path" cargo lambda build --release "$arch_flag" --output-format zip --bin nightdump)
    target_dir="${CARGO_TARGET_DIR:-$root/target}"
    [[ "$target_dir" == /* ]] || target_dir="$root/$target_dir"
    zip_path="$target_dir/lambda/nightdump/bootstrap.zip"
    [[ -f "$zip_path" ]] || die "build finished but $zip_path is missing: check the cargo lambda output above"
fi

# --- fargate: the task image ---------------------------------------------------------------

# A static arm64 binary in a one-layer OCI image (scripts/oci-image: no Docker needed), pushed
# to this account's ECR repository "nightdump" by skopeo, crane or docker, whichever is
# installed, and deployed pinned by its digest.
image_tool() {
    local tool
    for tool in skopeo crane docker; do
        command -v "$tool" >/dev/null 2>&1 && { echo "$tool"; return; }
    done
    die "engine fargate pushes an image with skopeo, crane or docker, and none is installed: 'apt-get install skopeo' (or 'brew install skopeo')"
}

push_image() {
    local dir="$1" tag="$2" registry="$3" tool="$4" password
    password="$(awsc ecr get-login-password)" || die "could not get an ECR login: check ecr:GetAuthorizationToken"
    case "$tool" in
        skopeo)
            local auth="$dir.auth.json"
            skopeo login --authfile "$auth" --username AWS --password-stdin "$registry" <<<"$password" >/dev/null || return 1
            skopeo copy --authfile "$auth" --preserve-digests "oci:$dir:latest" "docker://$registry/nightdump:$tag" || return 1
            rm -f "$auth" ;;
        crane)
            crane auth login "$registry" --username AWS --password-stdin <<<"$password" >/dev/null || return 1
            crane push "$dir" "$registry/nightdump:$tag" ;;
        docker)
            # Docker 25 or later loads an OCI layout archive.
            docker login --username AWS --password-stdin "$registry" <<<"$password" >/dev/null || return 1
            tar -C "$dir" -cf "$dir.tar" . || return 1
            local loaded
            loaded="$(docker load -q -i "$dir.tar" | awk '{print $NF}')" || return 1
            docker tag "$loaded" "$registry/nightdump:$tag" || return 1
            docker push "$registry/nightdump:$tag" ;;
    esac
}

task_image=""
if [[ "$engine" == fargate ]]; then
    tool="$(image_tool)"
    if [[ -z "$image_binary" ]]; then
        musl=aarch64-unknown-linux-musl
        if command -v rustup >/dev/null 2>&1; then
            rustup target list --installed 2>/dev/null | grep -qx "$musl" ||
                die "Rust target $musl missing (the task image holds a static binary): run 'rustup target add $musl'"
        fi
        echo "deploy.sh: building the static arm64 binary of the task image"
        target_dir="${CARGO_TARGET_DIR:-$root/target}"
        [[ "$target_dir" == /* ]] || target_dir="$root/$target_dir"
        (cd "$root" && PATH="$build_path" cargo lambda build --release --target "$musl" \
            --lambda-dir "$target_dir/task-image" --bin nightdump)
        image_binary="$target_dir/task-image/nightdump/bootstrap"
        [[ -f "$image_binary" ]] || die "build finished but $image_binary is missing: check the cargo lambda output above"
    fi
    image_dir="$(mktemp -d)"
    trap 'rm -rf "$image_dir" "$image_dir.tar" "$image_dir.auth.json"' EXIT
    rmdir "$image_dir"
    digest="$(python3 "$root/scripts/oci-image" "$image_binary" "$image_dir" --arch arm64)" ||
        die "could not assemble the task image (scripts/oci-image above)"
    registry="$account.dkr.ecr.$region.amazonaws.com"
    if ! awsc ecr describe-repositories --repository-names nightdump >/dev/null 2>&1; then
        echo "deploy.sh: creating the ECR repository nightdump"
        awsc ecr create-repository --repository-name nightdump --image-tag-mutability IMMUTABLE \
            --image-scanning-configuration scanOnPush=true --encryption-configuration encryptionType=KMS >/dev/null ||
            die "could not create the ECR repository nightdump: check ecr:CreateRepository"
    fi
    tag="${digest#sha256:}"
    tag="${tag:0:20}"
    if awsc ecr describe-images --repository-name nightdump --image-ids "imageTag=$tag" >/dev/null 2>&1; then
        echo "deploy.sh: image nightdump:$tag already pushed"
    else
        echo "deploy.sh: pushing image nightdump:$tag with $tool"
        push_image "$image_dir" "$tag" "$registry" "$tool" || die "pushing the image with $tool failed: see its output above"
    fi
    pushed="$(awsc ecr describe-images --repository-name nightdump --image-ids "imageTag=$tag" \
        --query 'imageDetails[0].imageDigest' --output text 2>/dev/null)" ||
        die "the image nightdump:$tag is not in ECR after the push: see the output above"
    task_image="$registry/nightdump@$pushed"
    if [[ -z "$subnets" || -z "$security_groups" ]]; then
        vpc="$(awsc ec2 describe-vpcs --filters Name=isDefault,Values=true --query 'Vpcs[0].VpcId' --output text 2>/dev/null || true)"
        [[ -n "$vpc" && "$vpc" != None ]] ||
            die "no default VPC in $region for the task: pass --subnets and --security-groups"
        if [[ -z "$subnets" ]]; then
            subnets="$(awsc ec2 describe-subnets --filters "Name=vpc-id,Values=$vpc" Name=default-for-az,Values=true \
                --query 'Subnets[].SubnetId' --output text | tr '\t' ',')"
        fi
        if [[ -z "$security_groups" ]]; then
            security_groups="$(awsc ec2 describe-security-groups --filters "Name=vpc-id,Values=$vpc" Name=group-name,Values=default \
                --query 'SecurityGroups[0].GroupId' --output text)"
        fi
        echo "deploy.sh: the task runs in the default VPC $vpc (subnets $subnets, security group $security_groups, public IP)"
    fi
fi

# A function in a VPC reaches S3 and Secrets Manager only through endpoints or a NAT gateway;
# without either every run times out at its first request, so say it now. A warning, not a
# refusal: the route may leave through a transit gateway this check cannot see.
if [[ -n "$function_in_vpc" ]]; then
    # shellcheck disable=SC2086 # the subnet ids are split on purpose
    vpc="$(awsc ec2 describe-subnets --subnet-ids ${subnets//,/ } --query 'Subnets[0].VpcId' --output text 2>/dev/null)" ||
        die "subnets $subnets not found in $region: fix --subnets"
    endpoints="$(awsc ec2 describe-vpc-endpoints --filters "Name=vpc-id,Values=$vpc" \
        --query 'VpcEndpoints[].ServiceName' --output text 2>/dev/null || true)"
    nat="$(awsc ec2 describe-nat-gateways --filter "Name=vpc-id,Values=$vpc" Name=state,Values=available \
        --query 'NatGateways[].NatGatewayId' --output text 2>/dev/null || true)"
    for service in s3 secretsmanager; do
        if grep -qw "com\.amazonaws\.$region\.$service" <<<"$endpoints"; then
            echo "deploy.sh: the function reaches $service through the VPC endpoint in $vpc"
        elif [[ -n "$nat" && "$nat" != None ]]; then
            echo "deploy.sh: the function reaches $service through the NAT gateway $nat"
        else
            echo "deploy.sh: warning: VPC $vpc has no $service endpoint and no NAT gateway, so the function cannot reach $service: add the endpoint (docs/network.md)" >&2
        fi
    done
fi

# --- upload --------------------------------------------------------------------------------

if command -v sha256sum >/dev/null 2>&1; then
    sha="$(sha256sum "$zip_path" | cut -d' ' -f1)"
else
    sha="$(shasum -a 256 "$zip_path" | cut -d' ' -f1)"
fi
# In the artifacts bucket, under the stack's name; named by content so an unchanged build is
# neither uploaded nor redeployed.
code_key="$stack_name/nightdump-$arch-$sha.zip"
if awsc s3api head-object --bucket "$code_bucket" --key "$code_key" >/dev/null 2>&1; then
    echo "deploy.sh: s3://$code_bucket/$code_key already uploaded"
else
    echo "deploy.sh: uploading s3://$code_bucket/$code_key"
    awsc s3api put-object --bucket "$code_bucket" --key "$code_key" --body "$zip_path" >/dev/null
fi

# --- deploy --------------------------------------------------------------------------------

overrides=(
    "BucketName=$bucket"
    "Prefix=$prefix"
    "MongoDbSecretArn=$secret_arn"
    "AlertEmail=$alert_email"
    "CodeBucket=$code_bucket"
    "CodeKey=$code_key"
    "Architecture=$arch"
)
[[ -n "$kms_key_arn" ]] && overrides+=("KmsKeyArn=$kms_key_arn")
if [[ -n "$schedule" ]]; then
    overrides+=("ScheduleExpression=$schedule")
    # The staleness alarm and `nightdump status` follow the schedule unless told otherwise.
    if ! printf '%s\n' ${extra_parameters[@]+"${extra_parameters[@]}"} | grep -q '^StaleAfterHours='; then
        hours="$(stale_hours "$schedule")"
        overrides+=("StaleAfterHours=$hours")
        printf '%s\n' ${extra_parameters[@]+"${extra_parameters[@]}"} | grep -q '^MaxAge=' || overrides+=("MaxAge=${hours}h")
        echo "deploy.sh: the staleness alarm fires after $hours hours without a success (schedule $schedule)"
    fi
fi
[[ -n "$timezone" ]] && overrides+=("ScheduleTimezone=$timezone")
[[ -n "$engine" ]] && overrides+=("Engine=$engine")

# Reserving concurrency must leave the account 100 unreserved (Lambda's rule); new accounts have
# a quota of 10 and cannot reserve any, and a stack asking for it fails and rolls back. Chosen
# from the account unless --parameter ReservedConcurrency=N says.
if ! printf '%s\n' ${extra_parameters[@]+"${extra_parameters[@]}"} | grep -q '^ReservedConcurrency='; then
    unreserved="$(awsc lambda get-account-settings --query 'AccountLimit.UnreservedConcurrentExecutions' --output text 2>/dev/null || true)"
    if [[ "$unreserved" =~ ^[0-9]+$ ]]; then
        current=""
        if [[ -n "$stack_status" ]]; then
            current="$(awsc cloudformation describe-stacks --stack-name "$stack_name" \
                --query "Stacks[0].Parameters[?ParameterKey=='ReservedConcurrency'].ParameterValue" --output text 2>/dev/null || true)"
        fi
        # The stack's own reservation is already counted out of the unreserved pool.
        needed=101
        [[ "$current" == 1 ]] && needed=100
        if (( unreserved >= needed )); then
            overrides+=("ReservedConcurrency=1")
            echo "deploy.sh: ReservedConcurrency=1 (one run at a time; the account keeps $((unreserved - needed + 100)) unreserved)"
        else
            overrides+=("ReservedConcurrency=0")
            echo "deploy.sh: ReservedConcurrency=0: the account has $unreserved unreserved concurrent executions and Lambda keeps 100 unreserved, so none can be reserved (raise the quota in Service Quotas to reserve one)"
        fi
    else
        echo "deploy.sh: could not read the account's Lambda concurrency (lambda:GetAccountSettings); ReservedConcurrency keeps the stack's value"
    fi
fi
if [[ "$engine" == fargate ]]; then
    overrides+=("TaskImage=$task_image")
fi
if [[ "$engine" == fargate || -n "$function_in_vpc" ]]; then
    overrides+=("Subnets=$subnets" "SecurityGroups=$security_groups")
fi
[[ -n "$function_in_vpc" ]] && overrides+=("FunctionInVpc=true")
overrides+=(${extra_parameters[@]+"${extra_parameters[@]}"})

deploy_stack() {
    echo "deploy.sh: deploying stack $stack_name in $region"
    if ! awsc cloudformation deploy \
        --template-file "$template" \
        --s3-bucket "$code_bucket" --s3-prefix "$stack_name/templates" \
        --stack-name "$stack_name" \
        --capabilities CAPABILITY_IAM \
        --no-fail-on-empty-changeset \
        --tags project=nightdump \
        --parameter-overrides "${overrides[@]}"; then
        echo "deploy.sh: recent failures of stack $stack_name:" >&2
        awsc cloudformation describe-stack-events --stack-name "$stack_name" --max-items 20 \
            --query "StackEvents[?contains(ResourceStatus, 'FAILED')].[LogicalResourceId, ResourceStatusReason]" \
            --output text >&2 || true
        die "CloudFormation deploy of '$stack_name' failed: fix the cause above and rerun"
    fi
}

# Same template text and same values for every parameter we pass (the others keep their
# current values) means there is nothing to do; checking first avoids an empty change set.
stack_is_current() {
    local deployed params kv
    case "$stack_status" in CREATE_COMPLETE | UPDATE_COMPLETE | UPDATE_ROLLBACK_COMPLETE) ;; *) return 1 ;; esac
    deployed="$(awsc cloudformation get-template --stack-name "$stack_name" --query TemplateBody --output text 2>/dev/null)" || return 1
    [[ "$deployed" == "$(cat "$template")" ]] || return 1
    params="$(awsc cloudformation describe-stacks --stack-name "$stack_name" \
        --query 'Stacks[0].Parameters[].[ParameterKey, ParameterValue]' --output text 2>/dev/null)" || return 1
    for kv in "${overrides[@]}"; do
        grep -qxF "${kv%%=*}"$'\t'"${kv#*=}" <<<"$params" || return 1
    done
}

if stack_is_current; then
    echo "deploy.sh: stack $stack_name is up to date, nothing to deploy"
else
    deploy_stack
fi

deployed_engine="$(awsc cloudformation describe-stacks --stack-name "$stack_name" \
    --query "Stacks[0].Parameters[?ParameterKey=='Engine'].ParameterValue" --output text 2>/dev/null || true)"
case "$deployed_engine" in
    fargate) echo "deploy.sh: engine fargate: the schedule starts a Step Functions state machine that runs ${task_image:-the task image} on ECS Fargate" ;;
    *) echo "deploy.sh: engine lambda: the schedule invokes the function $stack_name" ;;
esac
if [[ -n "$run_now" ]]; then
    if [[ "$deployed_engine" == fargate ]]; then
        machine="$(awsc cloudformation describe-stacks --stack-name "$stack_name" \
            --query "Stacks[0].Outputs[?OutputKey=='StateMachineArn'].OutputValue" --output text)"
        awsc stepfunctions start-execution --state-machine-arn "$machine" --input '{}' >/dev/null ||
            die "could not start the first backup: run 'aws stepfunctions start-execution --state-machine-arn $machine'"
    else
        # AWS CLI v2 reads --payload as base64 unless told otherwise; v1 has no such option.
        payload_format=()
        [[ "$(aws --version 2>&1)" == aws-cli/2* ]] && payload_format=(--cli-binary-format raw-in-base64-out)
        awsc lambda invoke --function-name "$stack_name" --invocation-type Event --payload '{}' \
            ${payload_format[@]+"${payload_format[@]}"} /dev/null >/dev/null ||
            die "could not start the first backup: run 'aws lambda invoke --function-name $stack_name --invocation-type Event /dev/null'"
    fi
    echo "deploy.sh: started a first backup; the staleness alarm turns OK when it succeeds"
elif [[ "$stack_status" == "" ]]; then
    echo "deploy.sh: the staleness alarm is in ALARM until a first backup succeeds: the schedule's next run, or now with --run-now"
fi
echo "deploy.sh: stack $stack_name outputs:"
awsc cloudformation describe-stacks --stack-name "$stack_name" \
    --query 'Stacks[0].Outputs[].[OutputKey, OutputValue]' --output text
# Alerts reach no one until the subscription is confirmed, and one confirmed by clicking the
# email's link can be unsubscribed by anyone holding an alert email.
topic_arn="$(awsc cloudformation list-stack-resources --stack-name "$stack_name" \
    --query "StackResourceSummaries[?LogicalResourceId=='AlertTopic'].PhysicalResourceId | [0]" --output text 2>/dev/null || true)"
subscription="$(awsc sns list-subscriptions-by-topic --topic-arn "$topic_arn" \
    --query "Subscriptions[?Endpoint=='$alert_email'].SubscriptionArn | [0]" --output text 2>/dev/null || true)"
if [[ "$subscription" == PendingConfirmation || ( "$stack_status" == "" && ( -z "$subscription" || "$subscription" == None ) ) ]]; then
    echo "deploy.sh: alerts reach $alert_email once the subscription is confirmed: copy the link in AWS's email (do not click it) and run ./deploy.sh --confirm-subscription 'LINK', so that only this account can unsubscribe it"
elif [[ "$subscription" == arn:* ]]; then
    authenticated="$(awsc sns get-subscription-attributes --subscription-arn "$subscription" \
        --query Attributes.ConfirmationWasAuthenticated --output text 2>/dev/null || true)"
    if [[ "$authenticated" == true ]]; then
        echo "deploy.sh: alerts reach $alert_email; only this account can unsubscribe it"
    else
        echo "deploy.sh: warning: the subscription of $alert_email was confirmed through the email's link, so anyone holding an alert email can unsubscribe it: see 'Confirm the alert subscription' in docs/deployment.md" >&2
    fi
fi
