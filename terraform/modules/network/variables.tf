variable "name" {
  description = "Name prefix for every resource."
  type        = string
}

variable "vpc_cidr" {
  description = "CIDR block of the VPC."
  type        = string

  # AWS accepts /16 to /28 for a VPC; the subnets (sixteenths) need /22 or
  # larger so the ALB's subnets keep free addresses.
  validation {
    condition     = can(cidrnetmask(var.vpc_cidr)) && try(tonumber(split("/", var.vpc_cidr)[1]) >= 16 && tonumber(split("/", var.vpc_cidr)[1]) <= 22, false)
    error_message = "vpc_cidr must be an IPv4 CIDR from /16 to /22 (e.g. 10.42.0.0/16)."
  }
}

variable "availability_zones" {
  description = "Two or more availability zones. The GPU nodes go in the first one (the cluster placement group is single-AZ); the load balancers span all of them."
  type        = list(string)

  validation {
    condition     = length(var.availability_zones) >= 2 && length(var.availability_zones) <= 8 && length(distinct(var.availability_zones)) == length(var.availability_zones)
    error_message = "Give two to eight distinct availability zones (an ALB needs subnets in two AZs)."
  }
}

variable "single_nat_gateway" {
  description = "One NAT gateway for all private subnets (cheaper) instead of one per AZ."
  type        = bool
  default     = true
}

variable "enable_ssm_endpoints" {
  description = "Create interface VPC endpoints for SSM (ssm, ssmmessages, ec2messages) so Session Manager does not depend on the NAT gateway."
  type        = bool
  default     = false
}

variable "tags" {
  description = "Tags added to every resource."
  type        = map(string)
  default     = {}
}
