variable "region" {
  description = "AWS region (p5 capacity is regional and scarce: check before choosing)."
  type        = string
  default     = "us-east-1"

  validation {
    condition     = can(regex("^[a-z]{2}(-gov)?-[a-z]+-[0-9]$", var.region))
    error_message = "region must be an AWS region name such as us-east-1."
  }
}

variable "name" {
  description = "Name prefix for every resource."
  type        = string
  default     = "dsa"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,19}$", var.name))
    error_message = "name must be 2-20 characters: lowercase letters, digits and hyphens, starting with a letter."
  }
}

variable "availability_zones" {
  description = "Two or more AZs; the GPU nodes go in the first (pick the AZ where your p5 capacity is)."
  type        = list(string)
  default     = ["us-east-1a", "us-east-1b"]

  validation {
    condition     = length(var.availability_zones) >= 2 && length(var.availability_zones) <= 8 && length(distinct(var.availability_zones)) == length(var.availability_zones)
    error_message = "Give two to eight distinct availability zones."
  }
}

variable "vpc_cidr" {
  description = "CIDR block of the VPC, /16 to /22 (each subnet is a sixteenth of it)."
  type        = string
  default     = "10.42.0.0/16"

  validation {
    condition     = can(cidrnetmask(var.vpc_cidr)) && try(tonumber(split("/", var.vpc_cidr)[1]) >= 16 && tonumber(split("/", var.vpc_cidr)[1]) <= 22, false)
    error_message = "vpc_cidr must be an IPv4 CIDR from /16 to /22 (e.g. 10.42.0.0/16)."
  }
}

variable "single_nat_gateway" {
  description = "One NAT gateway instead of one per AZ."
  type        = bool
  default     = true
}

variable "instance_type" {
  description = "GPU instance type: p5.48xlarge (8x H100), p5e.48xlarge / p5en.48xlarge (8x H200). H20-class nodes: see the gpu_cluster module's instance_type description."
  type        = string
  default     = "p5.48xlarge"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]*\\.[0-9]*x?large$", var.instance_type))
    error_message = "instance_type must look like an EC2 instance type, e.g. p5.48xlarge."
  }
}

variable "efa_interface_count" {
  description = "EFA interfaces per node: 32 for p5/p5e.48xlarge, 16 for p5en.48xlarge."
  type        = number
  default     = 32

  validation {
    condition     = var.efa_interface_count >= 0 && var.efa_interface_count <= 32
    error_message = "efa_interface_count must be between 0 and 32."
  }
}

variable "node_count" {
  description = "GPU nodes; 2 for the reference TP=8 x PP=2 layout."
  type        = number
  default     = 2

  validation {
    condition     = var.node_count >= 1 && var.node_count <= 8
    error_message = "node_count must be between 1 and 8."
  }
}

variable "ami_id" {
  description = "AMI override; null for the latest Ubuntu 24.04 LTS."
  type        = string
  default     = null
}

variable "capacity_reservation_id" {
  description = "Capacity Reservation or Capacity Block ID (cr-...) to launch into; null for none."
  type        = string
  default     = null
}

variable "market_type" {
  description = "\"on-demand\", or \"capacity-block\" for an EC2 Capacity Block."
  type        = string
  default     = "on-demand"

  validation {
    condition     = contains(["on-demand", "capacity-block"], var.market_type)
    error_message = "market_type must be \"on-demand\" or \"capacity-block\"."
  }
}

variable "weights_storage" {
  description = "\"nvme\" (instance-store RAID 0, re-synced after a stop) or \"ebs\" (persistent gp3 volume)."
  type        = string
  default     = "nvme"

  validation {
    condition     = contains(["nvme", "ebs"], var.weights_storage)
    error_message = "weights_storage must be \"nvme\" or \"ebs\"."
  }
}

variable "weights_volume_size_gb" {
  description = "gp3 weights volume size when weights_storage = \"ebs\"."
  type        = number
  default     = 1024

  validation {
    condition     = var.weights_volume_size_gb >= 800
    error_message = "weights_volume_size_gb must be at least 800 (the FP8 checkpoint is about 700 GB)."
  }
}

variable "weights_bucket_name" {
  description = "Weights bucket name; null generates one."
  type        = string
  default     = null
}

variable "weights_prefix" {
  description = "Key prefix of the checkpoint inside the weights bucket."
  type        = string
  default     = "DeepSeek-V3"

  validation {
    condition     = !startswith(var.weights_prefix, "/")
    error_message = "weights_prefix must not start with /."
  }
}

variable "force_destroy_weights" {
  description = "Let terraform destroy empty a non-empty weights bucket."
  type        = bool
  default     = false
}

variable "api_keys_secret_name" {
  description = "Secrets Manager secret name for the API keys."
  type        = string
  default     = "deepseek-alpha/api-keys"

  validation {
    condition     = can(regex("^[A-Za-z0-9/_+=.@-]{1,512}$", var.api_keys_secret_name))
    error_message = "api_keys_secret_name has characters Secrets Manager does not allow."
  }
}

variable "create_initial_api_key" {
  description = "Generate a first API key into the secret (kept in the Terraform state)."
  type        = bool
  default     = true
}

variable "secret_recovery_window_days" {
  description = "Recovery window of the secret on deletion: 0, or 7-30 days."
  type        = number
  default     = 7
}

variable "certificate_arn" {
  description = "ACM certificate (same region) for the public HTTPS listener."
  type        = string

  validation {
    condition     = can(regex("^arn:aws[a-zA-Z-]*:acm:[a-z0-9-]+:[0-9]{12}:certificate/[0-9a-f-]+$", var.certificate_arn))
    error_message = "certificate_arn must be an ACM certificate ARN."
  }
}

variable "public_hostname" {
  description = "DNS name the certificate covers and clients use (a CNAME or alias to alb_dns_name, made by you); null: the outputs use the ALB's own name, which the certificate does not cover."
  type        = string
  default     = null

  validation {
    condition     = var.public_hostname == null || can(regex("^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\\.)+[a-z]{2,63}$", coalesce(var.public_hostname, "x")))
    error_message = "public_hostname must be a lowercase DNS name such as api.example.com."
  }
}

variable "public_ingress_cidrs" {
  description = "Who may reach the public endpoint."
  type        = list(string)
  default     = ["0.0.0.0/0"]

  validation {
    condition     = length(var.public_ingress_cidrs) > 0 && alltrue([for c in var.public_ingress_cidrs : can(cidrhost(c, 0))])
    error_message = "public_ingress_cidrs must be a non-empty list of IPv4 CIDRs."
  }
}

variable "internal_client_cidrs" {
  description = "Who may reach the internal NLB; empty means the whole VPC."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for c in var.internal_client_cidrs : can(cidrhost(c, 0))])
    error_message = "internal_client_cidrs must be IPv4 CIDRs."
  }
}

variable "head_port" {
  description = "Port dsa-head listens on."
  type        = number
  default     = 8000

  validation {
    condition     = var.head_port >= 1024 && var.head_port <= 65535
    error_message = "head_port must be between 1024 and 65535."
  }
}

variable "nlb_port" {
  description = "Port of the internal NLB listener."
  type        = number
  default     = 8000

  validation {
    condition     = var.nlb_port >= 1 && var.nlb_port <= 65535
    error_message = "nlb_port must be between 1 and 65535."
  }
}

variable "idle_timeout_seconds" {
  description = "ALB idle timeout and NLB TCP idle timeout in seconds; long enough for streamed generations. dsa-head's keep-alive must exceed it: the ansible output carries it and the value to give the head."
  type        = number
  default     = 3600

  validation {
    condition     = var.idle_timeout_seconds >= 60 && var.idle_timeout_seconds <= 4000
    error_message = "idle_timeout_seconds must be between 60 and 4000."
  }
}

variable "served_model_name" {
  description = "Model name clients send (dsa-head --served-model-name); the ansible output carries it to the playbook's dsa_served_model_name."
  type        = string
  default     = "deepseek-ai/DeepSeek-V3"

  validation {
    condition     = can(regex("^[A-Za-z0-9][A-Za-z0-9._/:-]{0,127}$", var.served_model_name))
    error_message = "served_model_name must be 1-128 characters: letters, digits and . _ / : -, starting with a letter or digit."
  }
}

variable "http_listener" {
  description = "Port 80 of the public ALB: \"none\" (closed: no listener and no security-group rule, so no client can send a key in clear) or \"redirect\" (301 to HTTPS, nothing forwarded to the head; a key already sent over http:// has crossed the network in clear and must be rotated)."
  type        = string
  default     = "none"

  validation {
    condition     = contains(["none", "redirect"], var.http_listener)
    error_message = "http_listener must be \"none\" or \"redirect\"."
  }
}

variable "bench_host" {
  description = "Create a CPU load-test host in a private subnet (SSM access only) for dsa-bench against the internal NLB."
  type        = bool
  default     = false
}

variable "bench_instance_type" {
  description = "Instance type of the load-test host."
  type        = string
  default     = "c7i.4xlarge"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]*\\.[0-9]*x?large$", var.bench_instance_type))
    error_message = "bench_instance_type must look like an EC2 instance type, e.g. c7i.4xlarge."
  }
}

variable "enable_ssm_endpoints" {
  description = "Interface endpoints for SSM so Session Manager works without the NAT gateway."
  type        = bool
  default     = false
}

variable "tags" {
  description = "Extra tags for every resource."
  type        = map(string)
  default     = {}
}
